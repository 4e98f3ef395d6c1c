// Serves hoodiecrow-imap (the npm package, an in-memory scriptable IMAP
// server) on loopback with one mailbox of COUNT messages shaped like the
// benchmarks' (about 3.6 KB each), for the server comparison benchmark.
//
//   npm install --prefix target/hoodiecrow hoodiecrow-imap
//   NODE_PATH=target/hoodiecrow/node_modules node scripts/hoodiecrow-server.js [port] [count]
//
// It prints "listening on 127.0.0.1:PORT" and serves until killed. The
// account is hoodiecrow's built-in testuser / testpass.
"use strict";

const hoodiecrow = require("hoodiecrow-imap");

const port = Number(process.argv[2] || 0);
const count = Number(process.argv[3] || 10000);
const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
const user = "testuser";

const messages = [];
for (let index = 0; index < count; index++) {
    messages.push({
        raw:
            "From: Carol <carol@example.org>\r\nTo: " + user + "\r\nSubject: Order " + index + "\r\n" +
            "Message-ID: <" + index + "." + user + ">\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\n\r\n" +
            line.repeat(48),
    });
}

const server = hoodiecrow({
    plugins: ["LITERALPLUS", "UIDPLUS"],
    storage: { INBOX: { messages } },
});
server.listen(port, "127.0.0.1", () => {
    const address = server.server.address();
    console.log("listening on 127.0.0.1:" + address.port);
});
