// Preloaded into Node peers by bench/run.sh (`node --import`): a server that
// listens on a port without naming a host would accept connections on every
// interface; this binds it to 127.0.0.1 instead, so the benchmark stays on
// loopback.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args[1] === undefined || typeof args[1] === "function")) {
    if (args[1] === undefined) args[1] = "127.0.0.1";
    else args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
