// client-node's HTTP stack (node-fetch) loads the deprecated `punycode`
// module; its warning on every start says nothing about blixt. Imported
// before client-node so the flag is set when the warning would fire.
import process from "node:process";

process.noDeprecation = true;
