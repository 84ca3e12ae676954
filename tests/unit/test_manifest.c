/* test_manifest.c: manifest/presentation.c (Presentation API 3.0 and 2.1 documents) on
 * db_object / db_collection structs built by hand, no database. Documents are parsed back with
 * cJSON and checked field by field against SPECS.md C, D and G12; the HTML sanitiser is
 * table-driven plus a randomised check of its invariants. */
#include "manifest.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "db.h"

#define BASE "https://iiif.example.org/vellum"

/* ---- helpers ------------------------------------------------------------------------------ */

/* The string at a path of object keys and array indexes: "items/0/id" ("" when absent). */
static const cJSON *at(const cJSON *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *seg = strtok_r(buf, "/", &save); seg && j;
         seg = strtok_r(NULL, "/", &save)) {
        if (seg[0] >= '0' && seg[0] <= '9')
            j = cJSON_GetArrayItem(j, atoi(seg));
        else
            j = cJSON_GetObjectItemCaseSensitive(j, seg);
    }
    return j;
}

static const char *str_at(const cJSON *j, const char *path)
{
    const cJSON *v = at(j, path);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num_at(const cJSON *j, const char *path)
{
    const cJSON *v = at(j, path);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static int size_at(const cJSON *j, const char *path)
{
    const cJSON *v = at(j, path);
    return v ? cJSON_GetArraySize(v) : -1;
}

/* Every key of o is in the list (the official schema's Manifest has additionalProperties false). */
static bool only_keys(const cJSON *o, const char *const *keys, size_t n)
{
    for (const cJSON *k = o ? o->child : NULL; k; k = k->next) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= !strcmp(k->string, keys[i]);
        if (!found) {
            fprintf(stderr, "unexpected key %s\n", k->string);
            return false;
        }
    }
    return true;
}

/* ---- percent-encoding ----------------------------------------------------------------------- */

static void test_percent_encode(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"abcXYZ019", "abcXYZ019"},
        {"-._~", "-._~"},
        {"a/b", "a%2Fb"},
        {"MS 1", "MS%201"},
        {"\xC3\xA4", "%C3%A4"}, /* ä as UTF-8 */
        {"100%", "100%25"},
        {"a?b#c[d]e@f:g", "a%3Fb%23c%5Bd%5De%40f%3Ag"},
        {"+&=;,!$'()*", "%2B%26%3D%3B%2C%21%24%27%28%29%2A"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *e = manifest_percent_encode(cases[i].in);
        CHECK(e != NULL);
        if (e)
            CHECK_STR(e, cases[i].out);
        free(e);
    }
}

/* ---- HTML sanitiser ------------------------------------------------------------------------- */

#define P MANIFEST_TEXT_PLAIN
#define H3 MANIFEST_TEXT_HTML3
#define H2 MANIFEST_TEXT_HTML2

static void test_text(void)
{
    static const struct {
        enum manifest_text kind;
        const char *in, *out;
    } cases[] = {
        /* plain text passes through untouched, whatever the field */
        {P, "Book of Hours", "Book of Hours"},
        {H3, "Smith & Sons, 1 < 2", "Smith & Sons, 1 < 2"},
        {H2, "Smith & Sons", "Smith & Sons"},
        {H3, "", ""},
        /* labels carry no HTML: markup is removed, script content with it */
        {P, "On the <i>Origin</i> of Species", "On the Origin of Species"},
        {P, "<script>alert(1)</script>Title", "Title"},
        {P, "a < b", "a < b"},
        /* plain text that would look like HTML to a 3.0 client gets a trailing space */
        {P, "<3 >", "<3 > "},
        {P, "<b>x</b> <i>y</i>", "x y"},
        /* 3.0 allowed elements survive, in canonical form */
        {H3, "<p>Hello <b>world</b></p>", "<p>Hello <b>world</b></p>"},
        {H3, "<span><small>s</small><sub>1</sub><sup>2</sup></span>",
         "<span><small>s</small><sub>1</sub><sup>2</sup></span>"},
        {H3, "<P>Upper <B>case</B></P>", "<p>Upper <b>case</b></p>"},
        {H3, "<p>a<br>b<br/>c</p>", "<p>a<br/>b<br/>c</p>"},
        /* one element at the top, or it is wrapped in a span */
        {H3, "<p>x</p><p>y</p>", "<span><p>x</p><p>y</p></span>"},
        {H3, "<b>x</b> tail", "<span><b>x</b> tail</span>"},
        {H3, "<br>", "<br/>"},
        /* scripts and friends go with their content; other elements lose only their tags */
        {H3, "<script>alert(1)</script>", ""},
        {H3, "<p>a<script type=\"text/javascript\">alert('<p>')</script>b</p>", "<p>ab</p>"},
        {H3, "Hello <script>alert(1)</script>", "<span>Hello </span>"},
        {H3, "<style>p{}</style><p>k</p>", "<p>k</p>"},
        {H3, "<iframe src=\"http://evil\">x</iframe><p>k</p>", "<p>k</p>"},
        {H3, "<SCRIPT>x</SCRIPT ><p>k</p>", "<p>k</p>"},
        {H3, "<div>text</div>", "<span>text</span>"},
        {H3, "<p><em>e</em><strong>s</strong></p>", "<p>es</p>"},
        {H3, "<table><tr><td>c</td></tr></table>", "<span>c</span>"},
        /* attributes: only href on a (http, https, mailto) and src/alt on img */
        {H3, "<p onclick=\"x()\" class=\"c\" style=\"color:red\">a</p>", "<p>a</p>"},
        {H3, "<a href=\"https://example.org/?a=1&amp;b=2\" target=\"_blank\">x</a>",
         "<a href=\"https://example.org/?a=1&amp;b=2\">x</a>"},
        {H3, "<a href='mailto:a@example.org'>m</a>", "<a href=\"mailto:a@example.org\">m</a>"},
        {H3, "<a href=http://example.org/x>u</a>", "<a href=\"http://example.org/x\">u</a>"},
        {H3, "<a href=\"javascript:alert(1)\">x</a>", "<a>x</a>"},
        {H3, "<a href=\" JaVaScRiPt:alert(1)\">x</a>", "<a>x</a>"},
        {H3, "<a href=\"javascript&#58;alert(1)\">x</a>", "<a>x</a>"},
        {H3, "<a href=\"data:text/html,x\">x</a>", "<a>x</a>"},
        {H3, "<a href=\"http://e.org/&quot;onmouseover=&quot;x\">q</a>",
         "<a href=\"http://e.org/&quot;onmouseover=&quot;x\">q</a>"},
        {H3, "<img src=\"http://e.org/i.png\" alt=\"A &amp; B\" onerror=\"x()\">",
         "<img src=\"http://e.org/i.png\" alt=\"A &amp; B\"/>"},
        {H3, "<p><img src=\"javascript:x\">t</p>", "<p>t</p>"},
        {H3, "<p><img alt=\"no source\">t</p>", "<p>t</p>"},
        /* balancing: unclosed elements are closed, stray end tags dropped */
        {H3, "<p>unclosed <b>bold</p>", "<p>unclosed <b>bold</b></p>"},
        {H3, "<p>a</b></i></p>", "<p>a</p>"},
        {H3, "<p>a</p></p>", "<p>a</p>"},
        {H3, "<span/>", "<span></span>"},
        {H3, "<p>a</br>b</p>", "<p>ab</p>"},
        /* text is escaped for XML; only XML's own entities stay named */
        {H3, "<p>1 < 2 > 0</p>", "<p>1 &lt; 2 &gt; 0</p>"},
        {H3, "<p>&amp; &lt; &nbsp;&copy;&#233;&#xE9; &foo; & &#0; &#xD800;</p>",
         "<p>&amp; &lt; &#160;&#169;&#233;&#233; &amp;foo; &amp; &amp;#0; &amp;#xD800;</p>"},
        {H3, "<p>tab\tnl\nbell\x07</p>",
         "<p>tab\tnl\n"
         "bell</p>"},
        /* comments, CDATA, processing instructions, doctypes are removed */
        {H3, "<p><!-- c --><![CDATA[<script>x</script>]]>y<?php x ?></p>", "<p>y</p>"},
        {H3, "<!DOCTYPE html><p>d</p>", "<p>d</p>"},
        {H3, "<p>x<!-- never closed", "<p>x</p>"},
        /* a '<' that never closes is text */
        {H3, "<p>x <b", "<p>x &lt;b</p>"},
        /* 2.1 allows a b br i img p span only, and needs no wrapper */
        {H2, "<p>x</p><small>s</small><sub>1</sub>", "<p>x</p>s1"},
        {H2, "Hello <script>alert(1)</script><b>b</b>", "Hello <b>b</b>"},
        {H2, "<a href=\"vbscript:x\">v</a>", "<a>v</a>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = manifest_text(cases[i].in, cases[i].kind);
        CHECK(out != NULL);
        if (out)
            CHECK_MSG(!strcmp(out, cases[i].out), "case %zu: %s -> \"%s\", want \"%s\"", i,
                      cases[i].in, out, cases[i].out);
        free(out);
    }
}

/* A small well-formedness check of sanitiser output: balanced tags, allowed names only, no
 * attributes but href/src/alt, every '&' a reference. */
static bool well_formed(const char *s, enum manifest_text kind)
{
    static const char *const ok3[] = {"a", "b",     "br",   "i",   "img",
                                      "p", "small", "span", "sub", "sup"};
    char stack[64][16];
    int depth = 0;
    for (const char *p = s; *p;) {
        if (*p == '&') {
            const char *semi = strchr(p, ';');
            if (!semi || semi - p > 10)
                return false;
            p = semi + 1;
            continue;
        }
        if (*p == '>')
            return false;
        if (*p != '<') {
            p++;
            continue;
        }
        const char *gt = strchr(p, '>');
        if (!gt)
            return false;
        bool end = p[1] == '/', empty = gt[-1] == '/';
        const char *n = p + (end ? 2 : 1);
        size_t len = strcspn(n, " />");
        char name[16];
        if (len == 0 || len >= sizeof name)
            return false;
        memcpy(name, n, len);
        name[len] = '\0';
        bool allowed = false;
        for (size_t i = 0; i < sizeof ok3 / sizeof ok3[0]; i++)
            allowed |= !strcmp(name, ok3[i]);
        if (kind == MANIFEST_TEXT_HTML2 &&
            (!strcmp(name, "small") || !strcmp(name, "sub") || !strcmp(name, "sup")))
            allowed = false;
        if (!allowed)
            return false;
        for (const char *a = strchr(n, ' '); a && a < gt; a = strchr(a + 1, ' ')) {
            if (strncmp(a + 1, "href=\"", 6) && strncmp(a + 1, "src=\"", 5) &&
                strncmp(a + 1, "alt=\"", 5))
                return false;
            const char *q = strchr(strchr(a, '"') + 1, '"');
            if (!q || q > gt)
                return false;
            a = q;
        }
        if (end) {
            if (depth == 0 || strcmp(stack[depth - 1], name))
                return false;
            depth--;
        } else if (!empty) {
            if (depth == 64)
                return false;
            snprintf(stack[depth++], sizeof stack[0], "%s", name);
        }
        p = gt + 1;
    }
    return depth == 0;
}

/* What an HTML parser would take for markup: '<' then a letter, '/' + letter, '!' or '?'. */
static bool test_has_markup(const char *s)
{
    for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
        char c = p[1], d = c ? p[2] : '\0';
        bool alpha_c = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool alpha_d = (d >= 'a' && d <= 'z') || (d >= 'A' && d <= 'Z');
        if (alpha_c || (c == '/' && alpha_d) || c == '!' || c == '?')
            return true;
    }
    return false;
}

/* Random strings from HTML-ish fragments: whatever comes in, what goes out is well-formed, has
 * no script and (3.0) is empty or one element. */
static void test_text_random(void)
{
    static const char *const frags[] = {
        "<",        ">",         "/",          "<p>",         "</p>",      "<b>",     "</b>",
        "<script>", "</script>", "<a href=\"", "javascript:", "http://x/", "\"",      "'",
        "=",        "&",         "&amp;",      "&#",          "x",         " ",       "<!--",
        "-->",      "<img src=", "<br>",       "<div>",       "</div>",    "<style>", "<![CDATA[",
        "]]>",      "<?",        "onclick",    "<span",       "</span",    "<sub>",   "\t",
        "<SCRIPT",  "<a>",       "</a>",       "<i>",         "é"};
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int bad = 0;
    for (int round = 0; round < 20000; round++) {
        char in[512] = "";
        size_t len = 0;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int n = 1 + (int)((seed >> 33) % 20);
        for (int k = 0; k < n; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            const char *f = frags[(seed >> 33) % (sizeof frags / sizeof frags[0])];
            size_t fl = strlen(f);
            if (len + fl + 1 < sizeof in) {
                memcpy(in + len, f, fl + 1);
                len += fl;
            }
        }
        for (int kind = MANIFEST_TEXT_HTML3; kind <= MANIFEST_TEXT_HTML2; kind++) {
            char *out = manifest_text(in, (enum manifest_text)kind);
            /* Either text without markup, passed through (that a 3.0 client would not take
             * for HTML either), or well-formed allowed markup (3.0: one element). */
            bool ok = out != NULL;
            bool text = ok && !strcmp(out, in) && !test_has_markup(in) &&
                        (kind == MANIFEST_TEXT_HTML2 || !(in[0] == '<' && in[len - 1] == '>'));
            if (ok && !text) {
                ok = well_formed(out, (enum manifest_text)kind);
                if (ok && kind == MANIFEST_TEXT_HTML3 && *out)
                    ok = out[0] == '<' && out[strlen(out) - 1] == '>';
            }
            if (!ok && bad++ < 5)
                fprintf(stderr, "random %d kind %d: \"%s\" -> \"%s\"\n", round, kind, in,
                        out ? out : "(null)");
            free(out);
        }
        char *plain = manifest_text(in, MANIFEST_TEXT_PLAIN);
        size_t pl = plain ? strlen(plain) : 0;
        bool ok = plain && !test_has_markup(plain) &&
                  !(pl >= 2 && plain[0] == '<' && plain[pl - 1] == '>');
        if (!ok && bad++ < 5)
            fprintf(stderr, "random %d plain: \"%s\" -> \"%s\"\n", round, in,
                    plain ? plain : "(null)");
        free(plain);
    }
    CHECK_INT(bad, 0);
}

/* ---- a hand-built object ------------------------------------------------------------------ */

static struct db_text t_label[] = {
    {"en", "Book of Hours"}, {NULL, "MS 1"}, {"fr", "Livre d'heures"}};
static struct db_text t_summary[] = {{"en", "<p>A <b>fine</b> book<script>alert(1)</script></p>"}};
static struct db_text t_md_l0[] = {{"en", "Date"}};
static struct db_text t_md_v0[] = {{NULL, "c. 1450"}};
static struct db_text t_md_l1[] = {{"en", "Notes"}, {"de", "Notizen"}};
static struct db_text t_md_v1[] = {{"en", "See <a href=\"javascript:x\">here</a>"}};
static struct db_text t_rs_l[] = {{"en", "Attribution"}};
static struct db_text t_rs_v[] = {{"en", "Example Library"}};
static struct db_text t_c1[] = {{"none", "f. 1r"}};
static struct db_text t_c3[] = {{"en-GB", "f. 2r"}, {"es-419", "f. 2r (es)"}};
static struct db_text t_r1[] = {{"en", "Calendar"}};
static struct db_text t_r11[] = {{"en", "January"}};
static struct db_text t_r2[] = {{"en", "<script>x</script>Hours"}};

#define MAP(a)                                                                                     \
    {                                                                                              \
        a, sizeof a / sizeof a[0]                                                                  \
    }

static size_t r1_canvases[] = {0};
static size_t r11_canvases[] = {1};
static size_t r2_canvases[] = {2, 99 /* out of range: dropped */};
static struct db_range r1_sub[] = {{MAP(t_r11), r11_canvases, 1, NULL, 0}};
static struct db_range ranges[] = {
    {MAP(t_r1), r1_canvases, 1, r1_sub, 1},
    {MAP(t_r2), r2_canvases, 2, NULL, 0},
};
static struct db_pair metadata[] = {{MAP(t_md_l0), MAP(t_md_v0)}, {MAP(t_md_l1), MAP(t_md_v1)}};
static struct db_canvas canvases[] = {
    {MAP(t_c1), "ms1/f1r.jp2", 800, 600},
    {{NULL, 0}, "ms 1/f1v é.jp2", 150, 120},
    {MAP(t_c3), "ms1/f2r.jp2", 3000, 4000},
};
static char *behaviors[] = {"paged", "facing-pages", "unknown"};

static struct db_object make_object(void)
{
    struct db_object o;
    memset(&o, 0, sizeof o);
    o.id = "MS 1/\xC3\xA4";
    o.label = (struct db_lang_map)MAP(t_label);
    o.summary = (struct db_lang_map)MAP(t_summary);
    o.metadata = metadata;
    o.nmetadata = 2;
    o.has_required_statement = true;
    o.required_statement = (struct db_pair){MAP(t_rs_l), MAP(t_rs_v)};
    o.rights = "https://creativecommons.org/licenses/by/4.0/";
    o.nav_date = "1856-01-01T12:00:00+02:00";
    o.viewing_direction = "right-to-left";
    o.behavior = behaviors;
    o.nbehavior = 3;
    o.extra_json =
        "{\"provider\":[{\"id\":\"https://lib.example.org/"
        "\",\"type\":\"Agent\",\"label\":\"Example "
        "Library\",\"@context\":\"x\"},{\"id\":\"not a uri\",\"type\":\"Agent\"}],"
        "\"homepage\":{\"id\":\"https://lib.example.org/ms1\",\"type\":\"Text\",\"label\":{\"en\":"
        "[\"Catalogue record\"]},\"format\":\"text/html\"},"
        "\"seeAlso\":[{\"id\":\"https://lib.example.org/ms1.xml\",\"type\":\"Dataset\",\"format\":"
        "\"Bad Format\"}],\"rendering\":[],\"private\":{\"id\":\"https://x/\",\"type\":\"X\"}}";
    o.canvases = canvases;
    o.ncanvases = 3;
    o.ranges = ranges;
    o.nranges = 2;
    o.modified = 1700000000;
    return o;
}

#define M3 BASE "/presentation/3/MS%201%2F%C3%A4"
#define M2 BASE "/presentation/2/MS%201%2F%C3%A4"

static void test_manifest3(void)
{
    struct db_object o = make_object();
    struct verr err = {0};
    char *text = manifest_presentation3(&o, BASE, &err);
    CHECK_MSG(text != NULL, "%s", err.msg);
    cJSON *m = text ? cJSON_Parse(text) : NULL;
    CHECK(m != NULL);
    if (!m) {
        free(text);
        return;
    }
    static const char *const schema_keys[] = {"@context",
                                              "id",
                                              "label",
                                              "type",
                                              "metadata",
                                              "summary",
                                              "requiredStatement",
                                              "rendering",
                                              "service",
                                              "services",
                                              "viewingDirection",
                                              "placeholderCanvas",
                                              "accompanyingCanvas",
                                              "rights",
                                              "start",
                                              "navDate",
                                              "navPlace",
                                              "provider",
                                              "seeAlso",
                                              "thumbnail",
                                              "homepage",
                                              "behavior",
                                              "partOf",
                                              "items",
                                              "structures",
                                              "annotations"};
    CHECK(only_keys(m, schema_keys, sizeof schema_keys / sizeof schema_keys[0]));
    /* @context first (C4) */
    CHECK_STR(m->child->string, "@context");
    CHECK_STR(str_at(m, "@context"), "http://iiif.io/api/presentation/3/context.json");
    CHECK_STR(str_at(m, "id"), M3 "/manifest");
    CHECK_STR(str_at(m, "type"), "Manifest");
    /* language map: grouped by language, "none" for untagged */
    CHECK_STR(str_at(m, "label/en/0"), "Book of Hours");
    CHECK_STR(str_at(m, "label/none/0"), "MS 1");
    CHECK_STR(str_at(m, "label/fr/0"), "Livre d'heures");
    CHECK_INT(size_at(m, "label"), 3);
    CHECK_STR(str_at(m, "summary/en/0"), "<p>A <b>fine</b> book</p>");
    CHECK_INT(size_at(m, "metadata"), 2);
    CHECK_STR(str_at(m, "metadata/0/label/en/0"), "Date");
    CHECK_STR(str_at(m, "metadata/0/value/none/0"), "c. 1450");
    CHECK_STR(str_at(m, "metadata/1/label/de/0"), "Notizen");
    CHECK_STR(str_at(m, "metadata/1/value/en/0"), "<span>See <a>here</a></span>");
    CHECK_STR(str_at(m, "requiredStatement/label/en/0"), "Attribution");
    CHECK_STR(str_at(m, "requiredStatement/value/en/0"), "Example Library");
    /* G12: the schema wants the http form */
    CHECK_STR(str_at(m, "rights"), "http://creativecommons.org/licenses/by/4.0/");
    CHECK_STR(str_at(m, "navDate"), "1856-01-01T12:00:00+02:00");
    CHECK_STR(str_at(m, "viewingDirection"), "right-to-left");
    CHECK_INT(size_at(m, "behavior"), 1);
    CHECK_STR(str_at(m, "behavior/0"), "paged");
    /* extra_json: valid links kept (arrays, language-map labels, no @context), others dropped */
    CHECK_INT(size_at(m, "provider"), 1);
    CHECK_STR(str_at(m, "provider/0/label/none/0"), "Example Library");
    CHECK(at(m, "provider/0/@context") == NULL);
    CHECK_INT(size_at(m, "homepage"), 1);
    CHECK_STR(str_at(m, "homepage/0/format"), "text/html");
    CHECK_STR(str_at(m, "seeAlso/0/id"), "https://lib.example.org/ms1.xml");
    CHECK(at(m, "seeAlso/0/format") == NULL);
    CHECK(at(m, "rendering") == NULL);
    CHECK(at(m, "private") == NULL);
    /* manifest thumbnail from the first canvas: 800x600 in !200,200 is 200x150 */
    CHECK_STR(str_at(m, "thumbnail/0/id"), BASE "/iiif/3/ms1%2Ff1r.jp2/full/200,150/0/default.jpg");
    CHECK_INT(num_at(m, "thumbnail/0/width"), 200);
    CHECK_INT(num_at(m, "thumbnail/0/height"), 150);
    CHECK_STR(str_at(m, "thumbnail/0/service/0/id"), BASE "/iiif/3/ms1%2Ff1r.jp2");
    CHECK_STR(str_at(m, "thumbnail/0/service/0/type"), "ImageService3");

    /* canvases */
    CHECK_INT(size_at(m, "items"), 3);
    static const uint32_t sizes[3][2] = {{800, 600}, {150, 120}, {3000, 4000}};
    static const char *const imgs[3] = {"ms1%2Ff1r.jp2", "ms%201%2Ff1v%20%C3%A9.jp2",
                                        "ms1%2Ff2r.jp2"};
    for (int i = 0; i < 3; i++) {
        char p[64], want[512];
        const cJSON *cv = at(m, (snprintf(p, sizeof p, "items/%d", i), p));
        snprintf(want, sizeof want, "%s/canvas/%d", M3, i + 1);
        CHECK_STR(str_at(cv, "id"), want);
        CHECK_STR(str_at(cv, "type"), "Canvas");
        CHECK_INT(num_at(cv, "width"), sizes[i][0]);
        CHECK_INT(num_at(cv, "height"), sizes[i][1]);
        CHECK(at(cv, "@context") == NULL); /* only at the top (C4) */
        CHECK_INT(size_at(cv, "items"), 1);
        snprintf(want, sizeof want, "%s/canvas/%d/page", M3, i + 1);
        CHECK_STR(str_at(cv, "items/0/id"), want);
        CHECK_STR(str_at(cv, "items/0/type"), "AnnotationPage");
        const cJSON *a = at(cv, "items/0/items/0");
        CHECK_INT(size_at(cv, "items/0/items"), 1);
        snprintf(want, sizeof want, "%s/canvas/%d/annotation", M3, i + 1);
        CHECK_STR(str_at(a, "id"), want);
        CHECK_STR(str_at(a, "type"), "Annotation");
        CHECK_STR(str_at(a, "motivation"), "painting");
        CHECK_STR(str_at(a, "target"), str_at(cv, "id"));
        snprintf(want, sizeof want, "%s/iiif/3/%s/full/max/0/default.jpg", BASE, imgs[i]);
        CHECK_STR(str_at(a, "body/id"), want);
        CHECK_STR(str_at(a, "body/type"), "Image");
        CHECK_STR(str_at(a, "body/format"), "image/jpeg");
        CHECK_INT(num_at(a, "body/width"), sizes[i][0]);
        CHECK_INT(num_at(a, "body/height"), sizes[i][1]);
        snprintf(want, sizeof want, "%s/iiif/3/%s", BASE, imgs[i]);
        CHECK_STR(str_at(a, "body/service/0/id"), want);
        CHECK_STR(str_at(a, "body/service/0/type"), "ImageService3");
        CHECK_STR(str_at(a, "body/service/0/profile"), "level2");
        snprintf(want, sizeof want, "%s/iiif/2/%s", BASE, imgs[i]);
        CHECK_STR(str_at(a, "body/service/1/@id"), want);
        CHECK_STR(str_at(a, "body/service/1/@type"), "ImageService2");
        CHECK_STR(str_at(a, "body/service/1/profile"), "http://iiif.io/api/image/2/level2.json");
        CHECK_STR(str_at(cv, "thumbnail/0/service/0/id"), str_at(a, "body/service/0/id"));
    }
    CHECK_STR(str_at(m, "items/0/label/none/0"), "f. 1r");
    CHECK(at(m, "items/1/label") == NULL); /* no label stored: none invented in 3.0 */
    CHECK_STR(str_at(m, "items/2/label/en-GB/0"), "f. 2r");
    CHECK_STR(str_at(m, "items/2/label/es/0"), "f. 2r (es)"); /* G12: no digits in keys */
    /* thumbnails: 150x120 fits in 200x200 (max), 3000x4000 -> 150x200 */
    CHECK_STR(str_at(m, "items/1/thumbnail/0/id"),
              BASE "/iiif/3/ms%201%2Ff1v%20%C3%A9.jp2/full/max/0/default.jpg");
    CHECK_INT(num_at(m, "items/1/thumbnail/0/width"), 150);
    CHECK_STR(str_at(m, "items/2/thumbnail/0/id"),
              BASE "/iiif/3/ms1%2Ff2r.jp2/full/150,200/0/default.jpg");
    CHECK_INT(num_at(m, "items/2/thumbnail/0/width"), 150);
    CHECK_INT(num_at(m, "items/2/thumbnail/0/height"), 200);

    /* structures: range 1 = [canvas 1, range 1.1 = [canvas 2]], range 2 = [canvas 3] */
    CHECK_INT(size_at(m, "structures"), 2);
    CHECK_STR(str_at(m, "structures/0/id"), M3 "/range/1");
    CHECK_STR(str_at(m, "structures/0/type"), "Range");
    CHECK_STR(str_at(m, "structures/0/label/en/0"), "Calendar");
    CHECK_INT(size_at(m, "structures/0/items"), 2);
    CHECK_STR(str_at(m, "structures/0/items/0/id"), M3 "/canvas/1");
    CHECK_STR(str_at(m, "structures/0/items/0/type"), "Canvas");
    CHECK_INT(size_at(m, "structures/0/items/0"), 2); /* a reference: id and type only */
    CHECK_STR(str_at(m, "structures/0/items/1/id"), M3 "/range/1.1");
    CHECK_STR(str_at(m, "structures/0/items/1/type"), "Range");
    CHECK_STR(str_at(m, "structures/0/items/1/items/0/id"), M3 "/canvas/2");
    CHECK_STR(str_at(m, "structures/1/label/en/0"), "Hours");
    CHECK_INT(size_at(m, "structures/1/items"), 1);
    CHECK_STR(str_at(m, "structures/1/items/0/id"), M3 "/canvas/3");
    cJSON_Delete(m);
    free(text);
}

static void test_manifest3_variants(void)
{
    struct db_object o = make_object();
    struct verr err = {0};
    /* no label: the identifier, untagged; other rights go to metadata; bare dates get a time */
    o.label = (struct db_lang_map){NULL, 0};
    o.rights = "https://example.org/our-terms";
    o.nav_date = "1450-03-01";
    o.extra_json = "not json";
    o.nranges = 0;
    char *text = manifest_presentation3(&o, BASE, &err);
    cJSON *m = text ? cJSON_Parse(text) : NULL;
    CHECK(m != NULL);
    CHECK_STR(str_at(m, "label/none/0"), "MS 1/\xC3\xA4");
    CHECK(at(m, "rights") == NULL);
    CHECK_INT(size_at(m, "metadata"), 3);
    CHECK_STR(str_at(m, "metadata/2/label/en/0"), "Rights");
    CHECK_STR(str_at(m, "metadata/2/value/none/0"), "https://example.org/our-terms");
    CHECK_STR(str_at(m, "navDate"), "1450-03-01T00:00:00Z");
    CHECK(at(m, "structures") == NULL);
    CHECK(at(m, "provider") == NULL);
    cJSON_Delete(m);
    free(text);

    static const struct {
        const char *in, *out;
    } rights[] = {
        {"http://creativecommons.org/publicdomain/zero/1.0/",
         "http://creativecommons.org/publicdomain/zero/1.0/"},
        {"https://rightsstatements.org/vocab/InC/1.0/",
         "http://rightsstatements.org/vocab/InC/1.0/"},
        {"https://rightsstatements.org/page/NoC-US/1.0/",
         "http://rightsstatements.org/vocab/NoC-US/1.0/"},
        {"https://www.creativecommons.org/licenses/by-sa/4.0/",
         "http://creativecommons.org/licenses/by-sa/4.0/"},
        {"https://creativecommons.org/", NULL},
        {"ftp://creativecommons.org/licenses/by/4.0/", NULL},
    };
    for (size_t i = 0; i < sizeof rights / sizeof rights[0]; i++) {
        o.rights = (char *)rights[i].in;
        text = manifest_presentation3(&o, BASE, &err);
        m = text ? cJSON_Parse(text) : NULL;
        CHECK(m != NULL);
        if (rights[i].out)
            CHECK_STR(str_at(m, "rights"), rights[i].out);
        else
            CHECK(at(m, "rights") == NULL);
        cJSON_Delete(m);
        free(text);
    }
    static const struct {
        const char *in, *v3, *v2;
    } dates[] = {
        {"1856-01-01T00:00:00Z", "1856-01-01T00:00:00Z", "1856-01-01T00:00:00Z"},
        {"2024-02-29T23:30:00-01:00", "2024-02-29T23:30:00-01:00", "2024-03-01T00:30:00Z"},
        {"2000-01-01T00:30", "2000-01-01T00:30:00Z", "2000-01-01T00:30:00Z"},
        {"1999-12-31T23:59:59.250Z", "1999-12-31T23:59:59.250Z", "1999-12-31T23:59:59Z"},
        {"1900-02-29", NULL, NULL},
        {"c. 1450", NULL, NULL},
        {"2000-13-01", NULL, NULL},
    };
    o.rights = NULL;
    for (size_t i = 0; i < sizeof dates / sizeof dates[0]; i++) {
        o.nav_date = (char *)dates[i].in;
        text = manifest_presentation3(&o, BASE, &err);
        m = text ? cJSON_Parse(text) : NULL;
        CHECK(m != NULL);
        if (dates[i].v3)
            CHECK_STR(str_at(m, "navDate"), dates[i].v3);
        else
            CHECK(at(m, "navDate") == NULL);
        cJSON_Delete(m);
        free(text);
        text = manifest_presentation2(&o, BASE, &err);
        m = text ? cJSON_Parse(text) : NULL;
        CHECK(m != NULL);
        if (dates[i].v2)
            CHECK_STR(str_at(m, "navDate"), dates[i].v2);
        else
            CHECK(at(m, "navDate") == NULL);
        cJSON_Delete(m);
        free(text);
    }
    /* A canvas without a size cannot be described (the schema needs width/height). */
    struct db_canvas sizeless[] = {{{NULL, 0}, "x.jp2", 0, 0}};
    o.canvases = sizeless;
    o.ncanvases = 1;
    text = manifest_presentation3(&o, BASE, &err);
    CHECK(text == NULL && err.status == 500);
    free(text);
    o.ncanvases = 0;
    text = manifest_presentation3(&o, BASE, &err);
    CHECK(text == NULL && err.status == 500);
    free(text);
}

static void test_canvas3(void)
{
    struct db_object o = make_object();
    struct verr err = {0};
    char *text = manifest_canvas3(&o, 1, BASE, &err);
    cJSON *c = text ? cJSON_Parse(text) : NULL;
    CHECK(c != NULL);
    CHECK_STR(c ? c->child->string : "", "@context");
    CHECK_STR(str_at(c, "@context"), "http://iiif.io/api/presentation/3/context.json");
    CHECK_STR(str_at(c, "id"), M3 "/canvas/2");
    CHECK_STR(str_at(c, "type"), "Canvas");
    CHECK_INT(num_at(c, "width"), 150);
    CHECK_STR(str_at(c, "items/0/items/0/target"), M3 "/canvas/2");
    CHECK_STR(str_at(c, "partOf/0/id"), M3 "/manifest");
    CHECK_STR(str_at(c, "partOf/0/type"), "Manifest");
    cJSON_Delete(c);
    free(text);
    /* The same canvas as embedded in the manifest, but for @context and partOf. */
    text = manifest_presentation3(&o, BASE, &err);
    char *one = manifest_canvas3(&o, 2, BASE, &err);
    cJSON *m = cJSON_Parse(text), *alone = cJSON_Parse(one);
    cJSON_DeleteItemFromObject(alone, "@context");
    cJSON_DeleteItemFromObject(alone, "partOf");
    CHECK(cJSON_Compare(at(m, "items/2"), alone, true));
    cJSON_Delete(m);
    cJSON_Delete(alone);
    free(text);
    free(one);

    text = manifest_canvas3(&o, 3, BASE, &err);
    CHECK(text == NULL);
    CHECK_INT(err.status, 404);
    free(text);
}

static void test_collection3(void)
{
    struct db_text l_top[] = {{"en", "Everything"}};
    struct db_text l_m[] = {{"en", "Book of Hours"}};
    struct db_text l_c[] = {{NULL, "Medieval"}};
    struct db_collection_item items[] = {
        {false, "MS 1/\xC3\xA4", MAP(l_m), "ms1/f1r.jp2"},
        {true, "medieval mss", MAP(l_c), NULL},
        {false, "no-label", {NULL, 0}, NULL},
    };
    struct db_collection c = {"", MAP(l_top), items, 3, 1700000000};
    struct verr err = {0};
    char *text = manifest_collection3(&c, BASE, &err);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    CHECK(j != NULL);
    CHECK_STR(str_at(j, "@context"), "http://iiif.io/api/presentation/3/context.json");
    CHECK_STR(str_at(j, "id"), BASE "/presentation/3/collection");
    CHECK_STR(str_at(j, "type"), "Collection");
    CHECK_STR(str_at(j, "label/en/0"), "Everything");
    CHECK_INT(size_at(j, "items"), 3);
    CHECK_STR(str_at(j, "items/0/id"), M3 "/manifest");
    CHECK_STR(str_at(j, "items/0/type"), "Manifest");
    CHECK_STR(str_at(j, "items/0/label/en/0"), "Book of Hours");
    CHECK_STR(str_at(j, "items/0/thumbnail/0/id"),
              BASE "/iiif/3/ms1%2Ff1r.jp2/full/!200,200/0/default.jpg");
    CHECK_STR(str_at(j, "items/0/thumbnail/0/service/0/id"), BASE "/iiif/3/ms1%2Ff1r.jp2");
    CHECK(at(j, "items/0/items") == NULL);
    CHECK_STR(str_at(j, "items/1/id"), BASE "/presentation/3/collection/medieval%20mss");
    CHECK_STR(str_at(j, "items/1/type"), "Collection");
    CHECK_STR(str_at(j, "items/1/label/none/0"), "Medieval");
    CHECK_STR(str_at(j, "items/2/label/none/0"), "no-label"); /* label required (C1) */
    CHECK(at(j, "items/2/thumbnail") == NULL);
    cJSON_Delete(j);
    free(text);

    struct db_collection named = {"medieval mss", {NULL, 0}, items, 1, 1};
    text = manifest_collection3(&named, BASE, &err);
    j = text ? cJSON_Parse(text) : NULL;
    CHECK_STR(str_at(j, "id"), BASE "/presentation/3/collection/medieval%20mss");
    CHECK_STR(str_at(j, "label/none/0"), "medieval mss");
    cJSON_Delete(j);
    free(text);

    text = manifest_collection2(&c, BASE, &err);
    j = text ? cJSON_Parse(text) : NULL;
    CHECK_STR(str_at(j, "@context"), "http://iiif.io/api/presentation/2/context.json");
    CHECK_STR(str_at(j, "@id"), BASE "/presentation/2/collection");
    CHECK_STR(str_at(j, "@type"), "sc:Collection");
    CHECK_STR(str_at(j, "label/@value"), "Everything");
    CHECK_STR(str_at(j, "manifests/0/@id"), M2 "/manifest");
    CHECK_STR(str_at(j, "manifests/0/@type"), "sc:Manifest");
    CHECK_INT(size_at(j, "manifests"), 2);
    CHECK_STR(str_at(j, "collections/0/@id"), BASE "/presentation/2/collection/medieval%20mss");
    CHECK_STR(str_at(j, "collections/0/label"), "Medieval");
    cJSON_Delete(j);
    free(text);
}

static void test_manifest2(void)
{
    struct db_object o = make_object();
    struct verr err = {0};
    char *text = manifest_presentation2(&o, BASE, &err);
    CHECK_MSG(text != NULL, "%s", err.msg);
    cJSON *m = text ? cJSON_Parse(text) : NULL;
    CHECK(m != NULL);
    if (!m) {
        free(text);
        return;
    }
    CHECK_STR(m->child->string, "@context");
    CHECK_STR(str_at(m, "@context"), "http://iiif.io/api/presentation/2/context.json");
    CHECK_STR(str_at(m, "@id"), M2 "/manifest");
    CHECK_STR(str_at(m, "@type"), "sc:Manifest");
    CHECK(at(m, "id") == NULL && at(m, "type") == NULL && at(m, "items") == NULL);
    /* several languages: an array of strings and @value/@language objects */
    CHECK_INT(size_at(m, "label"), 3);
    CHECK_STR(str_at(m, "label/0/@value"), "Book of Hours");
    CHECK_STR(str_at(m, "label/0/@language"), "en");
    CHECK_STR(str_at(m, "label/1"), "MS 1");
    CHECK_STR(str_at(m, "label/2/@language"), "fr");
    CHECK_STR(str_at(m, "description/@value"), "<p>A <b>fine</b> book</p>");
    CHECK_STR(str_at(m, "metadata/0/label/@value"), "Date");
    CHECK_STR(str_at(m, "metadata/0/value"), "c. 1450");
    CHECK_STR(str_at(m, "metadata/1/value/@value"), "See <a>here</a>");
    CHECK_STR(str_at(m, "attribution/@value"), "Example Library");
    CHECK_STR(str_at(m, "license"), "https://creativecommons.org/licenses/by/4.0/");
    CHECK_STR(str_at(m, "navDate"), "1856-01-01T10:00:00Z");
    CHECK_STR(str_at(m, "viewingDirection"), "right-to-left");
    CHECK_STR(str_at(m, "viewingHint"), "paged");
    CHECK_STR(str_at(m, "related/0/@id"), "https://lib.example.org/ms1");
    CHECK_STR(str_at(m, "related/0/label"), "Catalogue record");
    CHECK_STR(str_at(m, "seeAlso/0/@id"), "https://lib.example.org/ms1.xml");
    CHECK_STR(str_at(m, "thumbnail/@id"), BASE "/iiif/2/ms1%2Ff1r.jp2/full/200,/0/default.jpg");
    CHECK_STR(str_at(m, "thumbnail/service/@id"), BASE "/iiif/2/ms1%2Ff1r.jp2");

    CHECK_INT(size_at(m, "sequences"), 1);
    CHECK_STR(str_at(m, "sequences/0/@type"), "sc:Sequence");
    CHECK_INT(size_at(m, "sequences/0/canvases"), 3);
    const cJSON *cv = at(m, "sequences/0/canvases/0");
    CHECK_STR(str_at(cv, "@id"), M2 "/canvas/1");
    CHECK_STR(str_at(cv, "@type"), "sc:Canvas");
    CHECK_STR(str_at(cv, "label"), "f. 1r");
    CHECK_INT(num_at(cv, "width"), 800);
    CHECK_INT(num_at(cv, "height"), 600);
    CHECK_STR(str_at(cv, "images/0/@type"), "oa:Annotation");
    CHECK_STR(str_at(cv, "images/0/motivation"), "sc:painting");
    CHECK_STR(str_at(cv, "images/0/on"), M2 "/canvas/1");
    CHECK_STR(str_at(cv, "images/0/resource/@id"),
              BASE "/iiif/2/ms1%2Ff1r.jp2/full/full/0/default.jpg");
    CHECK_STR(str_at(cv, "images/0/resource/@type"), "dctypes:Image");
    CHECK_STR(str_at(cv, "images/0/resource/format"), "image/jpeg");
    CHECK_INT(num_at(cv, "images/0/resource/width"), 800);
    CHECK_STR(str_at(cv, "images/0/resource/service/@context"),
              "http://iiif.io/api/image/2/context.json");
    CHECK_STR(str_at(cv, "images/0/resource/service/@id"), BASE "/iiif/2/ms1%2Ff1r.jp2");
    CHECK_STR(str_at(cv, "images/0/resource/service/profile"),
              "http://iiif.io/api/image/2/level2.json");
    /* 2.1 requires a canvas label: the page number when none is stored */
    CHECK_STR(str_at(m, "sequences/0/canvases/1/label"), "2");
    CHECK_INT(size_at(m, "sequences/0/canvases/2/label"), 2);

    /* structures: flat, pre-order, roots marked top */
    CHECK_INT(size_at(m, "structures"), 3);
    CHECK_STR(str_at(m, "structures/0/@id"), M2 "/range/1");
    CHECK_STR(str_at(m, "structures/0/@type"), "sc:Range");
    CHECK_STR(str_at(m, "structures/0/viewingHint"), "top");
    CHECK_STR(str_at(m, "structures/0/canvases/0"), M2 "/canvas/1");
    CHECK_STR(str_at(m, "structures/0/ranges/0"), M2 "/range/1.1");
    CHECK_STR(str_at(m, "structures/1/@id"), M2 "/range/1.1");
    CHECK(at(m, "structures/1/viewingHint") == NULL);
    CHECK_STR(str_at(m, "structures/1/canvases/0"), M2 "/canvas/2");
    CHECK_STR(str_at(m, "structures/2/@id"), M2 "/range/2");
    CHECK_INT(size_at(m, "structures/2/canvases"), 1);
    cJSON_Delete(m);
    free(text);
}

int main(void)
{
    test_percent_encode();
    test_text();
    test_text_random();
    test_manifest3();
    test_manifest3_variants();
    test_canvas3();
    test_collection3();
    test_manifest2();
    return CHECK_DONE();
}
