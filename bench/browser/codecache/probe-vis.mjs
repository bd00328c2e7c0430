// Is the headless page visible? (a hidden page could explain throttled background work)
import { serve, session } from "./lib.mjs";
const server = await serve(18766);
const { result } = await session("/tmp/cc-vis", server.url, async () => ({
  visibility: document.visibilityState, focus: document.hasFocus(), ua: navigator.userAgent,
}), null);
console.log(JSON.stringify(result));
server.close();
