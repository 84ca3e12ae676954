// parse_manifest.mjs: read Vellum's Presentation documents with a real client library,
// @iiif/parser (the parser behind Clover, Theseus and other IIIF viewers). For each URL given:
// fetch it; for 3.0 run the library's strict upgrade, which reports anything a viewer would have
// to repair, and expect no warning; normalise it and check the entity graph (canvases, sizes,
// image services); for 2.1 upgrade it to 3.0 and check the same. Exit 1 on any problem.
// Run by tests/integration/test_presentation.py after `npm ci` here.
import { normalize } from "@iiif/parser";
import { presentation3StrictUpgrade } from "@iiif/parser/strict";
import { upgrade } from "@iiif/parser/upgrader";

const problems = [];
const fail = (url, what) => problems.push(`${url}: ${what}`);

function checkManifest(url, m, version) {
    const state = { warnings: [] };
    if (version === 3) {
        presentation3StrictUpgrade(structuredClone(m), state);
        for (const w of state.warnings) fail(url, `strict upgrade warning: ${w}`);
    }
    const n = normalize(m);
    const man = n.entities.Manifest[n.resource.id];
    if (!man) return fail(url, "no Manifest entity after normalize");
    if (!man.items.length) fail(url, "no canvases");
    for (const ref of man.items) {
        const c = n.entities.Canvas[ref.id];
        if (!c || !(c.width > 0) || !(c.height > 0)) { fail(url, `canvas ${ref.id} has no size`); continue; }
        const page = n.entities.AnnotationPage[c.items[0]?.id];
        const anno = page && n.entities.Annotation[page.items[0]?.id];
        const bodyRef = anno && anno.body[0];
        const body = bodyRef && n.entities.ContentResource[bodyRef.id];
        if (!anno || anno.motivation[0] !== "painting") fail(url, `canvas ${ref.id}: no painting annotation`);
        if (!body || body.type !== "Image") { fail(url, `canvas ${ref.id}: no image body`); continue; }
        if (body.width !== c.width || body.height !== c.height) fail(url, `canvas ${ref.id}: body size differs`);
        const services = (body.service || []).map((s) => s.type || s["@type"]);
        if (!services.includes(version === 3 ? "ImageService3" : "ImageService2"))
            fail(url, `canvas ${ref.id}: no image service (${services})`);
    }
    return man.items.length;
}

for (const url of process.argv.slice(2)) {
    let doc;
    try {
        const r = await fetch(url);
        if (!r.ok) { fail(url, `HTTP ${r.status}`); continue; }
        doc = await r.json();
    } catch (e) {
        fail(url, `fetch: ${e}`);
        continue;
    }
    const is2 = doc["@context"] === "http://iiif.io/api/presentation/2/context.json";
    if (is2) doc = upgrade(doc);
    if (doc.type === "Manifest" || doc["@type"] === "sc:Manifest") {
        const n = checkManifest(url, doc, is2 ? 2 : 3);
        console.log(`@iiif/parser: ${url}: ${is2 ? "2.1 (upgraded)" : "3.0"} manifest, ${n} canvases`);
    } else if (doc.type === "Collection") {
        const n = normalize(doc);
        const c = n.entities.Collection[n.resource.id];
        if (!c || !c.items.length) fail(url, "empty or unreadable collection");
        else console.log(`@iiif/parser: ${url}: collection of ${c.items.length}`);
    } else {
        fail(url, `unexpected type ${doc.type}`);
    }
}
for (const p of problems) console.error(p);
process.exit(problems.length ? 1 : 0);
