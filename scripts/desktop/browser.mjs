// The browser half of desktop-test.sh: headless Chromium (the system's, driven by
// puppeteer-core over the DevTools protocol) runs noVNC against the desktop pod through the
// gateway, and the `gateway demo` page. Everything it needs comes in the environment (see
// desktop-test.sh); it prints one line per check and exits non-zero on the first failure.

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import puppeteer from "puppeteer-core";

const env = (name) => {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`missing environment variable ${name}`);
  return v;
};

// Chromium on a closed network: no background connections, no first-run, no QUIC, no GPU.
export const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
];

export async function launch(width, height) {
  const profile = mkdtempSync(join(tmpdir(), "desktop-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    userDataDir: profile,
    args: [...CHROMIUM_FLAGS, `--window-size=${width},${height}`],
    defaultViewport: { width, height },
    protocolTimeout: 60_000,
    timeout: 60_000,
  });
  const close = async () => {
    await browser.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { browser, close };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `check` (async, truthy = done) every 100 ms until it succeeds or `secs` pass.
async function until(secs, what, check) {
  const deadline = Date.now() + secs * 1000;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${secs}s waiting for ${what}`);
    await sleep(100);
  }
}

function ok(msg) {
  console.log(`ok   ${msg}`);
}

// --- images -------------------------------------------------------------------------------

// An XWD dump (xwd -root) as RGBA. Handles the ZPixmap, 24/32-bit TrueColor dumps Xvfb makes.
function parseXwd(buf) {
  // The header is always most significant byte first; the pixels follow `byteOrder`.
  const u32 = (i) => buf.readUInt32BE(i * 4);
  if (u32(1) !== 7) throw new Error(`not an XWD version 7 dump (version ${u32(1)})`);
  const [headerSize, , format, depth, width, height] = [u32(0), u32(1), u32(2), u32(3), u32(4), u32(5)];
  const byteOrder = u32(7);
  const bitsPerPixel = u32(11);
  const bytesPerLine = u32(12);
  const [redMask, greenMask, blueMask] = [u32(14), u32(15), u32(16)];
  const ncolors = u32(19);
  if (format !== 2 || bitsPerPixel !== 32 || depth < 24) {
    throw new Error(`unexpected xwd format ${format}, depth ${depth}, ${bitsPerPixel} bpp`);
  }
  const shift = (mask) => Math.log2(mask & -mask);
  const [rs, gs, bs] = [shift(redMask), shift(greenMask), shift(blueMask)];
  const start = headerSize + ncolors * 12;
  const rgba = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = start + y * bytesPerLine + x * 4;
      const px = byteOrder === 0 ? buf.readUInt32LE(at) : buf.readUInt32BE(at);
      const o = (y * width + x) * 4;
      rgba[o] = (px >>> rs) & 0xff;
      rgba[o + 1] = (px >>> gs) & 0xff;
      rgba[o + 2] = (px >>> bs) & 0xff;
      rgba[o + 3] = 0xff;
    }
  }
  return { width, height, rgba };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// RGBA → PNG (8-bit RGBA, no filtering), for the artifacts.
function encodePng({ width, height, rgba }) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  const raw = Buffer.alloc((width * 4 + 1) * height);
  for (let y = 0; y < height; y++) {
    rgba.copy(raw, y * (width * 4 + 1) + 1, y * width * 4, (y + 1) * width * 4);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// The X server's own picture of the screen.
function xScreenshot(display) {
  return parseXwd(execFileSync("xwd", ["-root", "-silent", "-display", display], { maxBuffer: 64 << 20 }));
}

// What noVNC's canvas shows, as RGBA (the framebuffer at scale 1).
async function canvasPixels(page) {
  const { width, height, b64 } = await page.evaluate(() => {
    const c = document.querySelector("#screen canvas");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let s = "";
    for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
    return { width: c.width, height: c.height, b64: btoa(s) };
  });
  return { width, height, rgba: Buffer.from(b64, "base64") };
}

// Share of pixels whose colour differs (any channel by more than 24: tight's JPEG is lossy).
function difference(a, b) {
  if (a.width !== b.width || a.height !== b.height) return 1;
  let off = 0;
  for (let i = 0; i < a.rgba.length; i += 4) {
    for (let c = 0; c < 3; c++) {
      if (Math.abs(a.rgba[i + c] - b.rgba[i + c]) > 24) {
        off++;
        break;
      }
    }
  }
  return off / (a.width * a.height);
}

function share(img, [r, g, b]) {
  let n = 0;
  for (let i = 0; i < img.rgba.length; i += 4) {
    if (img.rgba[i] === r && img.rgba[i + 1] === g && img.rgba[i + 2] === b) n++;
  }
  return n / (img.width * img.height);
}

// --- the gateway, seen from outside ----------------------------------------------------

async function tunnelsOpen(admin) {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  const m = text.match(/^gateway_websocket_tunnels_open\{route="websockify"\} (\d+)$/m);
  return m ? Number(m[1]) : 0;
}

async function tunnelBytes(admin) {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  const get = (dir) => {
    const re = new RegExp(`^gateway_websocket_bytes_total\\{direction="${dir}",route="websockify"\\} (\\d+)$`, "m");
    const re2 = new RegExp(`^gateway_websocket_bytes_total\\{route="websockify",direction="${dir}"\\} (\\d+)$`, "m");
    const m = text.match(re) ?? text.match(re2);
    return m ? Number(m[1]) : 0;
  };
  return { toUpstream: get("to_upstream"), toClient: get("to_client") };
}

// A WebSocket upgrade by hand: resolves with the status; an upgrade (101) is a failure here.
function rawUpgrade(addr, path) {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const req = http.request({
      host, port, path, timeout: 10_000,
      headers: {
        Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", Origin: `http://${addr}`,
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve(res.statusCode);
    });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("timeout", () => req.destroy(new Error("upgrade request timed out")));
    req.on("error", reject);
    req.end();
  });
}

const count = (file, needle) => readFileSync(file, "utf8").split(needle).length - 1;

// --- one noVNC session ---------------------------------------------------------------------

// Opens `url` in a new tab and counts the WebSocket payload bytes each way (DevTools events).
async function openDesktop(browser, url) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log(`page error (${url.split("#")[0]}): ${e.message}`));
  // No HTTP cache: every load fetches the page and noVNC's ~40 modules, from whichever server.
  await page.setCacheEnabled(false);
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable");
  const ws = { sent: 0, received: 0, handshakeStatus: null };
  const size = (f) => (f.opcode === 2 ? Buffer.from(f.payloadData, "base64").length : Buffer.byteLength(f.payloadData));
  cdp.on("Network.webSocketFrameSent", (e) => { ws.sent += size(e.response); });
  cdp.on("Network.webSocketFrameReceived", (e) => { ws.received += size(e.response); });
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => { ws.handshakeStatus = e.response.status; });
  await page.goto(url, { waitUntil: "load", timeout: 30_000 });
  return { page, ws };
}

const desktopState = (page) => page.evaluate(() => window.desktopState);

async function waitConnected(page) {
  return until(30, "noVNC to connect", async () => {
    const s = await desktopState(page);
    if (!s) return false;
    if (s.state === "failed" || s.state === "disconnected") throw new Error(`noVNC ${s.state}`);
    return s.state === "connected" && s;
  });
}

async function closeAndDrain(page, admin) {
  await page.close();
  if (admin) await until(15, "the tunnel gauge to return to 0", async () => (await tunnelsOpen(admin)) === 0);
}

// Canvas and X screenshot agree (polled: the first update may still be on its way).
async function matchesX(page, display, shots, name) {
  let canvas, x, diff;
  await until(20, `the canvas to show the X screen (${name})`, async () => {
    canvas = await canvasPixels(page);
    x = xScreenshot(display);
    diff = difference(canvas, x);
    return diff < 0.005;
  }).catch((e) => {
    if (canvas) writeFileSync(join(shots, `${name}-canvas.png`), encodePng(canvas));
    if (x) writeFileSync(join(shots, `${name}-x.png`), encodePng(x));
    throw new Error(`${e.message}; last difference ${(diff * 100).toFixed(2)} % of pixels`);
  });
  writeFileSync(join(shots, `${name}-canvas.png`), encodePng(canvas));
  writeFileSync(join(shots, `${name}-x.png`), encodePng(x));
  await page.screenshot({ path: join(shots, `${name}-page.png`) });
  return { canvas, x, diff };
}

// --- the checks ----------------------------------------------------------------------------

async function desktopChecks(browser) {
  const gw = env("GATEWAY_ADDR");
  const admin = env("ADMIN_ADDR");
  const display = env("DISPLAY_NUM");
  const shots = env("SHOTS");
  const x11vncLog = env("X11VNC_LOG");
  const websockifyLog = env("WEBSOCKIFY_LOG");
  const bg = env("XTERM_BG").match(/[0-9a-f]{2}/gi).map((h) => parseInt(h, 16));
  const page0 = `http://${gw}/`;
  const pw = `&password=${env("VNC_PASSWORD")}`;

  // 1. Through the gateway: the canvas is the X screen.
  const { page } = await openDesktop(browser, `${page0}#token=${env("TOKEN")}${pw}`);
  const s = await waitConnected(page);
  ok(`noVNC connected through the gateway (desktop "${(await desktopState(page)).name ?? s.name}")`);
  const first = await matchesX(page, display, shots, "desktop");
  const bgShare = share(first.x, bg);
  if (bgShare < 0.5) throw new Error(`the X screen is not the xterm (${(bgShare * 100).toFixed(1)} % its colour)`);
  ok(`canvas = X screenshot (${(first.diff * 100).toFixed(3)} % pixels differ; ${(bgShare * 100).toFixed(0)} % is the xterm's colour)`);

  // 2. The tunnel gauge counts the session.
  const open = await tunnelsOpen(admin);
  if (open !== 1) throw new Error(`gateway_websocket_tunnels_open{route="websockify"} = ${open} while open, want 1`);
  ok("tunnel gauge shows 1 while the desktop is open");

  // 3. Keys typed in the browser reach the desktop.
  const marker = `/tmp/desktop-typed-${process.pid}-${Date.now()}`;
  await page.mouse.click(300, 300);
  await page.keyboard.type(`touch ${marker}`, { delay: 15 });
  await page.keyboard.press("Enter");
  await until(15, `the typed command to create ${marker}`, async () => existsSync(marker));
  rmSync(marker, { force: true });
  ok(`keys typed in Chromium ran "touch ${marker}" in the desktop's xterm`);
  const after = await matchesX(page, display, shots, "desktop-typed");
  if (difference(first.x, after.x) === 0) throw new Error("the typed command did not change the screen");
  ok("the canvas follows the screen after typing");
  await closeAndDrain(page, admin);
  ok("tunnel gauge back to 0 after the tab closed");

  // 4. Bad tokens: refused before any upgrade; the VNC server sees nobody.
  const bad = { expired: env("TOKEN_EXPIRED"), forged: env("TOKEN_FORGED"), "other-key": env("TOKEN_OTHER_KEY"), missing: null };
  for (const [kind, token] of Object.entries(bad)) {
    const vncBefore = count(x11vncLog, "Got connection from client");
    const wsBefore = readFileSync(websockifyLog, "utf8").length;
    const path = token === null ? "/websockify" : `/websockify?jwt_token=${token}`;
    const status = await rawUpgrade(gw, path);
    if (status !== 401) throw new Error(`${kind} token: upgrade answered ${status}, want 401`);
    const { page: p, ws } = await openDesktop(browser, token === null ? `${page0}#${pw}` : `${page0}#token=${token}${pw}`);
    const st = await until(20, `noVNC to give up (${kind})`, async () => {
      const v = await desktopState(p);
      return v && v.state !== "connecting" && v;
    });
    if (st.state !== "failed") throw new Error(`${kind} token: noVNC ${st.state}`);
    if (ws.handshakeStatus === 101) throw new Error(`${kind} token: the browser got a 101`);
    await p.screenshot({ path: join(shots, `refused-${kind}.png`) });
    await closeAndDrain(p, admin);
    await sleep(300);
    const vncAfter = count(x11vncLog, "Got connection from client");
    const wsAfter = readFileSync(websockifyLog, "utf8").length;
    if (vncAfter !== vncBefore) throw new Error(`${kind} token: x11vnc saw ${vncAfter - vncBefore} connection(s)`);
    if (wsAfter !== wsBefore) throw new Error(`${kind} token: websockify logged something:\n${readFileSync(websockifyLog, "utf8").slice(wsBefore)}`);
    ok(`${kind} token: 401 before any upgrade, noVNC failed, x11vnc and websockify saw nothing`);
  }

  // 5. Page load → connected, and bytes each way: through the gateway vs. straight to
  // websockify (same page, served by websockify itself), alternating, in this run.
  const runs = Number(process.env.TIMING_RUNS ?? 5);
  const control = `http://${env("POD_ADDR")}:6081/index.html#ws=ws://${env("POD_ADDR")}:6081/${pw}`;
  const results = { gateway: [], direct: [] };
  for (let i = 0; i < runs; i++) {
    for (const [kind, url] of [["gateway", `${page0}#token=${env("TOKEN")}${pw}`], ["direct", control]]) {
      const before = kind === "gateway" ? await tunnelBytes(admin) : null;
      const { page: p, ws } = await openDesktop(browser, url);
      const st = await waitConnected(p);
      await sleep(2000); // the first full framebuffer update and a little quiet
      const bytes = { sent: ws.sent, received: ws.received };
      await closeAndDrain(p, kind === "gateway" ? admin : null);
      if (kind === "gateway") {
        const afterB = await until(5, "the tunnel byte counters", async () => {
          const b = await tunnelBytes(admin);
          return b.toClient > before.toClient && b;
        });
        bytes.wireToUpstream = afterB.toUpstream - before.toUpstream;
        bytes.wireToClient = afterB.toClient - before.toClient;
      }
      results[kind].push({ ms: st.connectedAt, wsMs: st.connectedAt - st.startedAt, ...bytes });
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const summary = {};
  for (const kind of ["gateway", "direct"]) {
    const r = results[kind];
    summary[kind] = {
      msMedian: Number(median(r.map((x) => x.ms)).toFixed(1)),
      msAll: r.map((x) => Number(x.ms.toFixed(1))),
      wsMsMedian: Number(median(r.map((x) => x.wsMs)).toFixed(1)),
      sentMedian: median(r.map((x) => x.sent)),
      receivedMedian: median(r.map((x) => x.received)),
      ...(kind === "gateway" && {
        wireToUpstreamMedian: median(r.map((x) => x.wireToUpstream)),
        wireToClientMedian: median(r.map((x) => x.wireToClient)),
      }),
    };
  }
  writeFileSync(join(shots, "timing.json"), JSON.stringify({ runs, results, summary }, null, 2));
  const g = summary.gateway, d = summary.direct;
  console.log(`timing: page load → noVNC connected, median of ${runs} (alternating runs, this machine):`);
  console.log(`timing:   through the gateway  ${g.msMedian} ms  (${g.msAll.join(", ")})`);
  console.log(`timing:   straight to websockify ${d.msMedian} ms  (${d.msAll.join(", ")})  → ratio ${(g.msMedian / d.msMedian).toFixed(2)}×`);
  console.log(`timing: noVNC start → connected (WebSocket upgrade and RFB handshake only): gateway ${g.wsMsMedian} ms, direct ${d.wsMsMedian} ms → ratio ${(g.wsMsMedian / d.wsMsMedian).toFixed(2)}×`);
  console.log(`timing: WebSocket payload in the first 2 s after connect: gateway ${g.sentMedian} B sent / ${g.receivedMedian} B received; direct ${d.sentMedian} B / ${d.receivedMedian} B`);
  console.log(`timing: the gateway's tunnel counters (payload + WebSocket framing): ${g.wireToUpstreamMedian} B to the pod, ${g.wireToClientMedian} B to the browser`);
  ok("timing measured");
}

async function demoChecks(browser) {
  const addr = env("DEMO_ADDR");
  const shots = env("SHOTS");
  const page = await browser.newPage();
  await page.goto(`http://${addr}/`, { waitUntil: "load", timeout: 30_000 });
  const log = () => page.$eval("#log", (e) => e.textContent);
  await until(20, "the demo page's echo round trip", async () => /^echo: /m.test(await log()));
  ok(`demo page: websocket opened and echoed (${JSON.stringify((await log()).split("\n").filter(Boolean).slice(0, 2))})`);
  await page.click("#spawner");
  await until(20, "the demo page's spawner answer", async () => /^200 fake desktop spawner: GET \/spawner\/getproclist/m.test(await log()));
  ok("demo page: spawner request answered 200 through the gateway");
  const overflow = await page.$eval("#log", (e) => e.scrollWidth - e.clientWidth);
  if (overflow > 0) throw new Error(`demo page: the log box overflows by ${overflow}px`);
  ok("demo page: long lines stay inside the log box");
  await page.screenshot({ path: join(shots, "demo-page.png"), fullPage: true });
  await page.close();
}

async function main() {
  const shots = env("SHOTS");
  const { browser, close } = await launch(Number(env("VIEW_WIDTH")), Number(env("VIEW_HEIGHT")));
  try {
    console.log(`chromium: ${await browser.version()}`);
    if (process.env.DEMO_ADDR) await demoChecks(browser);
    await desktopChecks(browser);
  } finally {
    await close();
  }
  console.log(`screenshots: ${shots}`);
}

main().catch((e) => {
  console.error(`FAIL ${e.stack ?? e}`);
  process.exit(1);
});
