// viewers.mjs: drive real IIIF viewers (OpenSeadragon, Mirador 4, Universal Viewer 4) in headless
// Chromium against a running Vellum, and print one JSON report on stdout. Run by
// tests/integration/test_viewers.py, which makes the images, starts vellum + nginx, and checks the
// report (statuses, tile grid, pixel statistics, Mirador's texts). This script only observes:
// it records every request with its status and the phase it started in, console errors, the
// state of the viewers' OpenSeadragon instances, and pixel statistics of screenshots.
//
//   node viewers.mjs config.json
//
// config: {chromium, artifacts, timeoutMs, scenarios: [{name, kind: "osd"|"mirador"|"uv", url,
//          page2 (mirador: part of the image id page 2 shows)}]}
// Each scenario gets its own browser with a new empty user-data dir. Progress goes to stderr.
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inflateSync } from "node:zlib";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const TIMEOUT = cfg.timeoutMs || 45000;
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"];
const log = (...a) => process.stderr.write(`viewers.mjs: ${a.join(" ")}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
mkdirSync(cfg.artifacts, { recursive: true });

// ---- a PNG decoder, just enough for Chromium's screenshots (8-bit RGB/RGBA, not interlaced) ----
function decodePng(buf) {
    if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error("not a PNG");
    let pos = 8, w = 0, h = 0, depth = 0, ctype = 0, interlace = 0;
    const idat = [];
    while (pos < buf.length) {
        const len = buf.readUInt32BE(pos), type = buf.toString("latin1", pos + 4, pos + 8);
        const data = buf.subarray(pos + 8, pos + 8 + len);
        if (type === "IHDR") {
            w = data.readUInt32BE(0); h = data.readUInt32BE(4);
            depth = data[8]; ctype = data[9]; interlace = data[12];
        } else if (type === "IDAT") idat.push(data);
        else if (type === "IEND") break;
        pos += 12 + len;
    }
    const ch = { 2: 3, 6: 4 }[ctype];
    if (depth !== 8 || !ch || interlace) throw new Error(`PNG type ${ctype}/${depth}/${interlace} not handled`);
    const raw = inflateSync(Buffer.concat(idat));
    const stride = w * ch, out = Buffer.alloc(h * stride);
    for (let y = 0; y < h; y++) {
        const f = raw[y * (stride + 1)], src = y * (stride + 1) + 1, dst = y * stride;
        for (let i = 0; i < stride; i++) {
            const x = raw[src + i], a = i >= ch ? out[dst + i - ch] : 0;
            const b = y ? out[dst - stride + i] : 0, c = y && i >= ch ? out[dst - stride + i - ch] : 0;
            let v;
            if (f === 0) v = x;
            else if (f === 1) v = x + a;
            else if (f === 2) v = x + b;
            else if (f === 3) v = x + ((a + b) >> 1);
            else {
                const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
                v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
            }
            out[dst + i] = v & 255;
        }
    }
    return { w, h, ch, px: out };
}

// Luma mean and standard deviation, how many distinct colours (5 bits a channel), and how much of
// the picture the most common colour covers: a blank or single-colour view has a tiny deviation
// and one colour covering nearly everything.
function pixelStats(png) {
    const { w, h, ch, px } = decodePng(png);
    let sum = 0, sum2 = 0;
    const hist = new Map();
    for (let i = 0; i < w * h; i++) {
        const r = px[i * ch], g = px[i * ch + 1], b = px[i * ch + 2];
        const y = 0.299 * r + 0.587 * g + 0.114 * b;
        sum += y; sum2 += y * y;
        const key = ((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3);
        hist.set(key, (hist.get(key) || 0) + 1);
    }
    const n = w * h, mean = sum / n;
    return {
        width: w, height: h, mean: +mean.toFixed(2),
        stddev: +Math.sqrt(Math.max(0, sum2 / n - mean * mean)).toFixed(2),
        colours: hist.size, dominant: +(Math.max(...hist.values()) / n).toFixed(4),
    };
}

// ---- in the page: find every OpenSeadragon viewer, whichever bundle made it ---------------------
// Each OpenSeadragon (>= 4) registers its viewers with `_viewers.set(element, viewer)` on a Map
// at the end of the Viewer constructor. Mirador and UV bundle their own copy and expose none, so
// Map.prototype.set is wrapped (test-only) to see those registrations.
const INIT_SCRIPT = `(() => {
    const seen = window.__vellumOsd = [];
    const set = Map.prototype.set;
    Map.prototype.set = function (k, v) {
        try {
            if (v && typeof v === "object" && v.viewport && v.world && typeof Element !== "undefined"
                && k instanceof Element && v.element === k && !seen.includes(v)) seen.push(v);
        } catch (e) { /* never break the page */ }
        return set.call(this, k, v);
    };
})();`;

// State of the main viewers (navigators have a .viewer that is another viewer): loaded and still.
const OSD_STATE = `(() => {
    const all = (window.__vellumOsd || []).filter((v) => !(v.viewer && v.viewer !== v)
        && v.element && v.element.isConnected && v.element.getBoundingClientRect().width > 0);
    return all.map((v) => {
        const vp = v.viewport, n = v.world.getItemCount();
        const items = [];
        for (let i = 0; i < n; i++) {
            const it = v.world.getItemAt(i);
            items.push({ url: (it.source && (it.source.id || it.source["@id"])) || null,
                         fullyLoaded: !!(it.getFullyLoaded && it.getFullyLoaded()) });
        }
        const z0 = vp.getZoom(true), z1 = vp.getZoom(false), c0 = vp.getCenter(true), c1 = vp.getCenter(false);
        const still = Math.abs(z0 / z1 - 1) < 1e-3 && Math.abs(c0.x - c1.x) < 1e-4 && Math.abs(c0.y - c1.y) < 1e-4;
        const r = v.element.getBoundingClientRect();
        let drawer = null, image = null;
        try { drawer = v.drawer && (v.drawer.getType ? v.drawer.getType() : v.drawer.constructor.name); } catch (e) { }
        if (n) {
            // The part of the viewer the first image covers, in page pixels.
            const b = vp.viewportToViewerElementRectangle(v.world.getItemAt(0).getBounds(true));
            const x0 = Math.max(0, b.x), y0 = Math.max(0, b.y);
            const x1 = Math.min(r.width, b.x + b.width), y1 = Math.min(r.height, b.y + b.height);
            if (x1 > x0 && y1 > y0) image = { x: r.x + x0, y: r.y + y0, width: x1 - x0, height: y1 - y0 };
        }
        const toImage = (z) => n ? v.world.getItemAt(0).viewportToImageZoom(z) : null;
        return { items, still, zoom: z1, imageZoom: toImage(z1), maxImageZoom: toImage(vp.getMaxZoom()),
                 drawer, rect: { x: r.x, y: r.y, width: r.width, height: r.height }, image };
    });
})()`;

const ZOOM_IN = '[title="zoom in" i], [aria-label="zoom in" i]';

async function runScenario(sc) {
    const t0 = Date.now();
    const profile = mkdtempSync(join(tmpdir(), "vellum-e2e-profile-"));
    const rep = { name: sc.name, kind: sc.kind, url: sc.url, requests: [], console: [], pageErrors: [],
                  screenshots: {}, osd: {}, texts: {}, notes: [], timings: {} };
    let ctx;
    try {
        ctx = await chromium.launchPersistentContext(profile, {
            executablePath: cfg.chromium, headless: true, args: FLAGS,
            viewport: { width: 1280, height: 800 }, timeout: TIMEOUT,
        });
        rep.browser = ctx.browser() ? ctx.browser().version() : null;
        let phase = "load", lastImage = Date.now();
        const byReq = new Map();
        const isImage = (u) => /\/iiif\/[23]\/[^/]+\/[^/]+\/[^/]+\/[^/]+\/[^/]+$/.test(new URL(u).pathname);
        ctx.on("request", (r) => {
            const e = { url: r.url(), method: r.method(), type: r.resourceType(), phase, status: null,
                        failure: null, done: false, t: Date.now() - t0 };
            rep.requests.push(e);
            byReq.set(r, e);
            if (isImage(e.url)) lastImage = Date.now();
        });
        ctx.on("response", (resp) => {
            const e = byReq.get(resp.request());
            if (e) {
                const h = resp.headers();
                e.status = resp.status();
                e.cors = h["access-control-allow-origin"] || null;
                e.contentType = h["content-type"] || null;
            }
        });
        const finish = (r, failure) => {
            const e = byReq.get(r);
            if (!e) return;
            e.done = true;
            if (failure) e.failure = failure;
            if (isImage(e.url)) lastImage = Date.now();
        };
        ctx.on("requestfinished", (r) => finish(r, null));
        ctx.on("requestfailed", (r) => finish(r, (r.failure() && r.failure().errorText) || "failed"));
        await ctx.addInitScript(INIT_SCRIPT);
        const page = ctx.pages()[0] || await ctx.newPage();
        page.setDefaultTimeout(TIMEOUT);
        page.on("console", (m) => {
            if (m.type() === "error" || m.type() === "warning")
                rep.console.push({ type: m.type(), text: m.text().slice(0, 500), phase,
                                   where: m.location() && m.location().url });
        });
        page.on("pageerror", (e) => rep.pageErrors.push({ text: String(e).slice(0, 500), phase }));

        // Settled: the viewers' OpenSeadragon instances have images, all fully loaded, not
        // animating, and no image request is in flight; twice in a row 250 ms apart (a new
        // tile request between the two resets it). Also at least `minImages` image responses
        // in this phase, and, with `showing`, every viewer shows an image whose id contains it.
        // Event-driven: polls state, never sleeps a fixed time.
        async function settle(what, showing = null, minImages = 1) {
            const start = Date.now();
            let stable = 0, state = [];
            for (;;) {
                const imgs = rep.requests.filter((e) => e.phase === phase && isImage(e.url));
                const pending = rep.requests.filter((e) => !e.done && isImage(e.url)).length;
                state = await page.evaluate(OSD_STATE).catch(() => []);
                const failed = await page.evaluate(() => window.vellumViewer && window.vellumViewer.openFailed).catch(() => null);
                if (failed) throw new Error(`${what}: the viewer could not open the image: ${failed}`);
                const osdReady = state.length > 0 && state.every((v) => v.items.length > 0 && v.still
                    && v.items.every((i) => i.fullyLoaded)
                    && (!showing || v.items.some((i) => (i.url || "").includes(showing))));
                const ok = osdReady && pending === 0 && imgs.filter((e) => e.done).length >= minImages
                    && Date.now() - lastImage >= 250;
                stable = ok ? stable + 1 : 0;
                if (stable >= 2) break;
                if (Date.now() - start > TIMEOUT) {
                    rep.notes.push(`${what}: not settled after ${TIMEOUT} ms (viewers: ${JSON.stringify(state)}, ` +
                                   `pending image requests: ${pending}, images this phase: ${imgs.length})`);
                    rep.timedOut = true;
                    // Every later step needs this one: stop this viewer here.
                    throw new Error(`${what}: not settled after ${TIMEOUT} ms`);
                }
                await sleep(250);
            }
            rep.osd[what] = state;
            rep.timings[what] = Date.now() - t0;
            log(`${sc.name}: ${what} settled at ${Date.now() - t0} ms`);
            return state;
        }

        // Screenshot of the first viewer's area; retried while it looks blank (drawing may lag
        // the loaded event by a frame or two on a loaded machine).
        async function shoot(what) {
            const file = join(cfg.artifacts, `${sc.name}-${what}.png`);
            const start = Date.now();
            let stats = null;
            for (;;) {
                // The visible part of the image (the viewer's background around it is not
                // counted), else the whole viewer.
                const st = await page.evaluate(OSD_STATE).catch(() => []);
                const r = st.length ? (st[0].image && st[0].image.width > 50 && st[0].image.height > 50
                    ? st[0].image : st[0].rect) : { x: 0, y: 0, width: 1280, height: 800 };
                const clip = { x: Math.max(0, r.x), y: Math.max(0, r.y),
                               width: Math.min(r.width, 1280 - Math.max(0, r.x)), height: Math.min(r.height, 800 - Math.max(0, r.y)) };
                const png = await page.screenshot({ clip });
                writeFileSync(file, png);
                stats = pixelStats(png);
                if ((stats.stddev > 10 && stats.dominant < 0.9) || Date.now() - start > 10000) break;
                await page.evaluate(() => new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res))));
            }
            await page.screenshot({ path: join(cfg.artifacts, `${sc.name}-${what}-page.png`) });
            rep.screenshots[what] = { file, ...stats };
            return stats;
        }


        // ---- open --------------------------------------------------------------------------
        await page.goto(sc.url, { waitUntil: "load" });
        await settle("load");
        await shoot("load");

        if (sc.kind === "mirador") {
            // Label in the window's title bar and the "About this item" panel, metadata there,
            // "1 of 3" under the canvas.
            await page.locator(".mirador-osd-info").first().waitFor({ state: "visible" }).catch(() => {});
            rep.texts.load = await page.evaluate(() => document.body.innerText);
        } else {
            rep.texts.load = await page.evaluate(() => document.body.innerText);
        }

        // ---- zoom in twice with the viewer's own "Zoom in" button ---------------------------------
        phase = "zoom";
        const zoomBefore = (rep.osd.load[0] || {}).zoom;
        const zoomButton = page.locator(ZOOM_IN).filter({ visible: true }).first();
        await zoomButton.click();
        await zoomButton.click();
        const st = await settle("zoom");
        rep.zoomFactor = st[0] && zoomBefore ? +(st[0].zoom / zoomBefore).toFixed(3) : null;
        rep.zoomAtMax = !!(st[0] && st[0].imageZoom >= 0.98 * st[0].maxImageZoom);
        await shoot("zoom");

        // ---- pan: drag the picture up and left by about half the view ----------------------------
        // (from the lower right, clear of Mirador's controls at the bottom centre and of the
        // navigators, to the upper left: far enough that tiles not yet loaded come into view)
        phase = "pan";
        const r = st[0].rect;
        await page.mouse.move(r.x + 0.8 * r.width, r.y + 0.75 * r.height);
        await page.mouse.down();
        await page.mouse.move(r.x + 0.2 * r.width, r.y + 0.25 * r.height, { steps: 8 });
        await page.mouse.up();
        await settle("pan");
        await shoot("pan");

        // ---- Mirador: next page ------------------------------------------------------------------
        if (sc.kind === "mirador") {
            phase = "page2";
            await page.getByRole("button", { name: "Next item" }).first().click();
            await page.getByText(/\b2 of 3\b/).first().waitFor({ state: "visible" }).catch(() => {});
            await settle("page2", sc.page2);
            await shoot("page2");
            rep.texts.page2 = await page.evaluate(() => document.body.innerText);
        }
    } catch (e) {
        rep.error = String(e && e.stack || e).slice(0, 2000);
        log(`${sc.name}: ${rep.error}`);
    } finally {
        if (ctx) await ctx.close().catch(() => {});
        rmSync(profile, { recursive: true, force: true });
    }
    rep.ms = Date.now() - t0;
    return rep;
}

const report = { scenarios: [] };
for (const sc of cfg.scenarios) {
    log(`${sc.name}: ${sc.url}`);
    report.scenarios.push(await runScenario(sc));
}
process.stdout.write(JSON.stringify(report) + "\n");
