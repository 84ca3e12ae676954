/* presentation.c: IIIF Presentation API documents from the catalogue's plain structs: Manifest,
 * Canvas and Collection for 3.0 (../shared/iiif/SPECS.md C), Manifest and Collection for 2.1
 * (D). What is emitted also passes the official 3.0 JSON Schema, which is stricter than the
 * spec (G12): no keys outside the schema's list, rights only in its http:// forms. */
#include "manifest.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db.h"
#include "strbuf.h"

/* Thumbnails: the largest side of a generated thumbnail (a common viewer strip size). */
#define THUMB_PX 200
#define THUMB_BOX "!200,200"
/* Deeper nesting of ranges than this is not a table of contents; deeper levels are dropped. */
#define MAX_RANGE_DEPTH 32

/* ---- percent-encoding ----------------------------------------------------------------------- */

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 §2.3: only unreserved characters go unencoded, so an identifier holding '/', '?',
 * '#', '%', spaces or non-ASCII bytes is always one path segment (Image API 3.0 §9 asks the
 * same of clients). */
static void sb_pct(struct strbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        const unsigned char *run = p;
        while (*p && is_unreserved(*p))
            p++;
        strbuf_put(b, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        strbuf_put(b, e, 3);
        p++;
    }
}

char *manifest_percent_encode(const char *s)
{
    struct strbuf b = {0};
    sb_pct(&b, s);
    return strbuf_take(&b);
}

/* ---- HTML in text values (SPECS C3, 3.0 §4.4, 2.1 §4.3) ------------------------------------- */

static bool is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* '<' that opens markup as an HTML parser sees it: a tag, an end tag, a comment, a doctype or a
 * processing instruction. "a < b" is just text. */
static bool opens_markup(const char *p)
{
    return p[0] == '<' &&
           (is_alpha(p[1]) || (p[1] == '/' && is_alpha(p[2])) || p[1] == '!' || p[1] == '?');
}

static bool has_markup(const char *s)
{
    for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<'))
        if (opens_markup(p))
            return true;
    return false;
}

static bool looks_like_html(const char *s)
{
    size_t n = strlen(s);
    return n >= 2 && s[0] == '<' && s[n - 1] == '>';
}

/* Elements whose content is code or foreign markup, not text: dropped with everything in them. */
static bool drops_content(const char *name)
{
    static const char *const names[] = {"script",   "style",    "iframe",   "object",    "embed",
                                        "noscript", "template", "textarea", "title",     "xmp",
                                        "noembed",  "noframes", "svg",      "math",      "select",
                                        "applet",   "frameset", "frame",    "plaintext", "head"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i]))
            return true;
    return false;
}

static bool allowed_element(const char *name, enum manifest_text kind)
{
    static const char *const v2[] = {"a", "b", "br", "i", "img", "p", "span"};
    static const char *const v3[] = {"small", "sub", "sup"};
    if (kind == MANIFEST_TEXT_PLAIN)
        return false;
    for (size_t i = 0; i < sizeof v2 / sizeof v2[0]; i++)
        if (!strcmp(name, v2[i]))
            return true;
    if (kind == MANIFEST_TEXT_HTML3)
        for (size_t i = 0; i < sizeof v3 / sizeof v3[0]; i++)
            if (!strcmp(name, v3[i]))
                return true;
    return false;
}

/* Characters XML 1.0 allows (§2.2); anything else cannot appear even as a reference. */
static bool xml_char(uint32_t c)
{
    return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
           (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

/* An entity reference at s ("&amp;", "&#233;", "&#xE9;", a few common HTML names): its code
 * point and length including ';', or 0 when s is not one. XML knows only five names, so the
 * HTML ones are written back as numeric references. */
static size_t entity(const char *s, uint32_t *cp)
{
    static const struct {
        const char *name;
        uint32_t cp;
    } names[] = {{"amp", '&'},     {"lt", '<'},     {"gt", '>'},     {"quot", '"'},
                 {"apos", '\''},   {"nbsp", 160},   {"copy", 169},   {"reg", 174},
                 {"laquo", 171},   {"raquo", 187},  {"ndash", 8211}, {"mdash", 8212},
                 {"lsquo", 8216},  {"rsquo", 8217}, {"ldquo", 8220}, {"rdquo", 8221},
                 {"hellip", 8230}, {"middot", 183}, {"deg", 176},    {"sect", 167}};
    if (s[0] != '&')
        return 0;
    if (s[1] == '#') {
        bool hex = s[2] == 'x' || s[2] == 'X';
        const char *p = s + (hex ? 3 : 2);
        uint32_t v = 0;
        size_t digits = 0;
        for (;; p++, digits++) {
            int d;
            if (*p >= '0' && *p <= '9')
                d = *p - '0';
            else if (hex && lower(*p) >= 'a' && lower(*p) <= 'f')
                d = lower(*p) - 'a' + 10;
            else
                break;
            if (digits >= 8)
                return 0;
            v = v * (hex ? 16u : 10u) + (uint32_t)d;
        }
        if (!digits || *p != ';' || !xml_char(v))
            return 0;
        *cp = v;
        return (size_t)(p + 1 - s);
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i].name);
        if (!strncmp(s + 1, names[i].name, n) && s[1 + n] == ';') {
            *cp = names[i].cp;
            return n + 2;
        }
    }
    return 0;
}

static void put_utf8(struct strbuf *b, uint32_t c)
{
    char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (char)c, n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xC0 | (c >> 6)), u[1] = (char)(0x80 | (c & 0x3F)), n = 2;
    } else if (c < 0x10000) {
        u[0] = (char)(0xE0 | (c >> 12)), u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (char)(0x80 | (c & 0x3F)), n = 3;
    } else {
        u[0] = (char)(0xF0 | (c >> 18)), u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3F)), u[3] = (char)(0x80 | (c & 0x3F)), n = 4;
    }
    strbuf_put(b, u, n);
}

/* Text or an attribute value, escaped for XML; control characters XML forbids are dropped. */
static void put_escaped(struct strbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '&')
            strbuf_puts(b, "&amp;");
        else if (c == '<')
            strbuf_puts(b, "&lt;");
        else if (c == '>')
            strbuf_puts(b, "&gt;");
        else if (c == '"')
            strbuf_puts(b, "&quot;");
        else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            continue;
        else
            strbuf_putc(b, (char)c);
    }
}

/* An attribute value with its references resolved (what a browser would use). */
static void decode_value(struct strbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t m = s[i] == '&' ? entity(s + i, &cp) : 0;
        if (m && i + m <= n) {
            put_utf8(b, cp);
            i += m;
        } else {
            strbuf_putc(b, s[i++]);
        }
    }
}

/* Links may only go to the web or to mail (3.0 §4.4); the scheme is read from the decoded value
 * so "javascript&#58;..." cannot slip through. */
static bool safe_url(const char *v, bool allow_mailto)
{
    while (*v && ((unsigned char)*v <= 0x20))
        v++;
    static const char *const schemes[] = {"http://", "https://", "mailto:"};
    for (size_t i = 0; i < (allow_mailto ? 3u : 2u); i++) {
        size_t n = strlen(schemes[i]);
        size_t k = 0;
        while (k < n && v[k] && lower(v[k]) == schemes[i][k])
            k++;
        if (k == n)
            return true;
    }
    return false;
}

struct html {
    struct strbuf out;
    enum manifest_text kind;
    char stack[32][16]; /* open allowed elements (names as parsed, at most 15 bytes) */
    int depth;
    int top_nodes; /* nodes at depth 0: one element means no wrapper is needed */
    bool top_is_element, in_top_text;
};

static void html_text_node(struct html *h)
{
    if (h->depth == 0 && !h->in_top_text) {
        h->top_nodes++;
        h->top_is_element = false;
        h->in_top_text = true;
    }
}

static void html_element_node(struct html *h)
{
    if (h->depth == 0) {
        h->top_nodes++;
        h->top_is_element = true;
        h->in_top_text = false;
    }
}

/* One text character (or reference) at s in HTML mode; returns how many bytes it used. */
static size_t html_text(struct html *h, const char *s)
{
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
        return 1;
    html_text_node(h);
    if (c == '&') {
        uint32_t cp;
        size_t m = entity(s, &cp);
        if (!m) {
            strbuf_puts(&h->out, "&amp;");
            return 1;
        }
        if (cp == '&' || cp == '<' || cp == '>' || cp == '"' || cp == '\'')
            strbuf_put(&h->out, s, m);
        else
            strbuf_printf(&h->out, "&#%u;", (unsigned)cp);
        return m;
    }
    if (c == '<')
        strbuf_puts(&h->out, "&lt;");
    else if (c == '>')
        strbuf_puts(&h->out, "&gt;");
    else
        strbuf_putc(&h->out, (char)c);
    return 1;
}

struct tag {
    char name[16];
    bool is_end, self_closing;
    const char *href, *src, *alt; /* raw values (not NUL-terminated) */
    size_t href_len, src_len, alt_len;
    bool has_href, has_src, has_alt;
};

/* Parse the tag at s ('<' already seen to open markup). Returns its length including '>', or 0
 * when it never closes (the '<' is then text). Attribute values may hold '>' inside quotes. */
static size_t parse_tag(const char *s, struct tag *t)
{
    memset(t, 0, sizeof *t);
    const char *p = s + 1;
    if (*p == '/') {
        t->is_end = true;
        p++;
    }
    size_t n = 0;
    while (is_alpha(*p) || (*p >= '0' && *p <= '9') || *p == '-' || *p == ':') {
        if (n + 1 < sizeof t->name)
            t->name[n++] = lower(*p);
        else
            t->name[0] = '?'; /* too long to be any element we know */
        p++;
    }
    t->name[n] = '\0';
    for (;;) {
        while (is_space(*p))
            p++;
        if (!*p)
            return 0;
        if (*p == '>')
            return (size_t)(p + 1 - s);
        if (*p == '/') {
            if (p[1] == '>') {
                t->self_closing = true;
                return (size_t)(p + 2 - s);
            }
            p++;
            continue;
        }
        const char *an = p;
        while (*p && !is_space(*p) && *p != '=' && *p != '>' && *p != '/')
            p++;
        if (p == an) { /* a stray '=' */
            p++;
            continue;
        }
        size_t alen = (size_t)(p - an);
        while (is_space(*p))
            p++;
        const char *v = NULL;
        size_t vlen = 0;
        if (*p == '=') {
            p++;
            while (is_space(*p))
                p++;
            if (*p == '"' || *p == '\'') {
                char q = *p++;
                v = p;
                while (*p && *p != q)
                    p++;
                if (!*p)
                    return 0;
                vlen = (size_t)(p - v);
                p++;
            } else {
                v = p;
                while (*p && !is_space(*p) && *p != '>')
                    p++;
                vlen = (size_t)(p - v);
            }
        }
        if (!v)
            continue;
        if (alen == 4 && !strncasecmp(an, "href", 4)) {
            t->href = v, t->href_len = vlen, t->has_href = true;
        } else if (alen == 3 && !strncasecmp(an, "src", 3)) {
            t->src = v, t->src_len = vlen, t->has_src = true;
        } else if (alen == 3 && !strncasecmp(an, "alt", 3)) {
            t->alt = v, t->alt_len = vlen, t->has_alt = true;
        }
    }
}

/* The attribute's decoded value if it is a safe URL, written escaped as name="value". */
static void put_url_attr(struct html *h, const char *name, const char *v, size_t n, bool mailto)
{
    struct strbuf d = {0};
    decode_value(&d, v, n);
    if (!d.oom && d.p && safe_url(d.p, mailto)) {
        strbuf_printf(&h->out, " %s=\"", name);
        put_escaped(&h->out, d.p, d.len);
        strbuf_putc(&h->out, '"');
    }
    if (d.oom)
        h->out.oom = true;
    free(d.p);
}

static void html_start(struct html *h, const struct tag *t)
{
    if (!allowed_element(t->name, h->kind))
        return;
    if (!strcmp(t->name, "br")) {
        html_element_node(h);
        strbuf_puts(&h->out, "<br/>");
        return;
    }
    if (!strcmp(t->name, "img")) {
        struct strbuf d = {0};
        if (t->has_src)
            decode_value(&d, t->src, t->src_len);
        bool ok = t->has_src && !d.oom && d.p && safe_url(d.p, false);
        free(d.p);
        if (!ok) /* an image without a usable source shows nothing */
            return;
        html_element_node(h);
        strbuf_puts(&h->out, "<img");
        put_url_attr(h, "src", t->src, t->src_len, false);
        if (t->has_alt) {
            struct strbuf a = {0};
            decode_value(&a, t->alt, t->alt_len);
            strbuf_puts(&h->out, " alt=\"");
            if (a.p)
                put_escaped(&h->out, a.p, a.len);
            strbuf_putc(&h->out, '"');
            if (a.oom)
                h->out.oom = true;
            free(a.p);
        }
        strbuf_puts(&h->out, "/>");
        return;
    }
    if (!t->self_closing && h->depth == (int)(sizeof h->stack / sizeof h->stack[0]))
        return; /* too deep: the tag is dropped, its content kept */
    html_element_node(h);
    strbuf_printf(&h->out, "<%s", t->name);
    if (!strcmp(t->name, "a") && t->has_href)
        put_url_attr(h, "href", t->href, t->href_len, true);
    if (t->self_closing) {
        /* "<span/>" is an open tag to an HTML parser: write the pair. */
        strbuf_printf(&h->out, "></%s>", t->name);
        return;
    }
    strbuf_putc(&h->out, '>');
    snprintf(h->stack[h->depth++], sizeof h->stack[0], "%s", t->name);
    h->in_top_text = false;
}

/* An end tag closes the nearest open element of its name (and anything left open inside it);
 * one that matches nothing is dropped, so the result is always balanced. */
static void html_end(struct html *h, const struct tag *t)
{
    int k = h->depth - 1;
    while (k >= 0 && strcmp(h->stack[k], t->name))
        k--;
    if (k < 0)
        return;
    while (h->depth > k) {
        h->depth--;
        strbuf_printf(&h->out, "</%s>", h->stack[h->depth]);
    }
    h->in_top_text = false;
}

/* Skip past the end of an element whose content is dropped: "</name" then its '>'. */
static const char *skip_element(const char *p, const char *name)
{
    size_t n = strlen(name);
    for (; (p = strchr(p, '<')); p++) {
        if (p[1] == '/' && !strncasecmp(p + 2, name, n) && !is_alpha(p[2 + n]) &&
            !(p[2 + n] >= '0' && p[2 + n] <= '9')) {
            const char *gt = strchr(p, '>');
            return gt ? gt + 1 : p + strlen(p);
        }
    }
    return NULL;
}

static const char *skip_past(const char *p, const char *end)
{
    const char *e = strstr(p, end);
    return e ? e + strlen(end) : p + strlen(p);
}

static char *sanitize(const char *s, enum manifest_text kind)
{
    struct html h;
    memset(&h, 0, sizeof h);
    h.kind = kind;
    const char *p = s;
    while (*p) {
        if (*p != '<' || !opens_markup(p)) {
            if (kind == MANIFEST_TEXT_PLAIN)
                strbuf_putc(&h.out, *p++);
            else
                p += html_text(&h, p);
            continue;
        }
        /* Comments, CDATA, doctypes and processing instructions are removed (3.0 §4.4). */
        if (!strncmp(p, "<!--", 4)) {
            p = skip_past(p + 4, "-->");
            continue;
        }
        if (!strncmp(p, "<![CDATA[", 9)) {
            p = skip_past(p + 9, "]]>");
            continue;
        }
        if (p[1] == '!' || p[1] == '?') {
            p = skip_past(p + 2, ">");
            continue;
        }
        struct tag t;
        size_t n = parse_tag(p, &t);
        if (!n) { /* never closed: HTML text "&lt;"; in plain text the '<' is dropped */
            if (kind == MANIFEST_TEXT_PLAIN)
                p++;
            else
                p += html_text(&h, p);
            continue;
        }
        p += n;
        if (t.is_end) {
            if (kind != MANIFEST_TEXT_PLAIN)
                html_end(&h, &t);
        } else if (drops_content(t.name)) {
            if (!t.self_closing) {
                const char *after = skip_element(p, t.name);
                p = after ? after : p + strlen(p);
            }
        } else {
            html_start(&h, &t);
        }
    }
    while (h.depth > 0) {
        h.depth--;
        strbuf_printf(&h.out, "</%s>", h.stack[h.depth]);
    }
    /* 3.0 §4.4: HTML is one element, the string starting with '<' and ending with '>'. */
    if (kind == MANIFEST_TEXT_HTML3 && h.out.len && !(h.top_nodes == 1 && h.top_is_element)) {
        struct strbuf w = {0};
        strbuf_puts(&w, "<span>");
        if (h.out.p)
            strbuf_put(&w, h.out.p, h.out.len);
        strbuf_puts(&w, "</span>");
        if (h.out.oom)
            w.oom = true;
        free(h.out.p);
        return strbuf_take(&w);
    }
    return strbuf_take(&h.out);
}

char *manifest_text(const char *value, enum manifest_text kind)
{
    if (!value)
        value = "";
    bool markup = has_markup(value);
    if (kind == MANIFEST_TEXT_PLAIN) {
        char *out = markup ? sanitize(value, kind) : strdup(value);
        /* Removing a tag can join a '<' before it with text after it into a new tag
         * ("<<b>i>"): strip again until nothing is left (each pass removes something). */
        while (out && has_markup(out)) {
            char *again = sanitize(out, kind);
            free(out);
            out = again;
        }
        /* 3.0 §4.4: plain text that starts with '<' and ends with '>' gets a trailing space,
         * or clients would take it for HTML. */
        if (out && looks_like_html(out)) {
            size_t n = strlen(out);
            char *sp = realloc(out, n + 2);
            if (!sp) {
                free(out);
                return NULL;
            }
            sp[n] = ' ';
            sp[n + 1] = '\0';
            out = sp;
        }
        return out;
    }
    /* A 3.0 client takes any value that starts with '<' and ends with '>' for HTML. */
    if (!markup && (kind == MANIFEST_TEXT_HTML2 || !looks_like_html(value)))
        return strdup(value);
    return sanitize(value, kind);
}

/* ---- building documents ------------------------------------------------------------------- */

/* Documents are written as JSON text straight away, property by property in document order,
 * byte for byte what cJSON_PrintUnformatted printed for the same tree when they were built as
 * one: no whitespace; in strings \" \\ \b \f \n \r \t, \u00xx (lower-case hex) for the other
 * control characters, every other byte as it is; numbers (all unsigned 32-bit here) in plain
 * decimal. A 1,000-canvas Manifest is some 40,000 values: allocating, printing and freeing a tree
 * of them cost several times what writing the text does. cJSON still parses extra_json, and the
 * link properties taken from it are edited as cJSON and printed by it. Any failed allocation
 * (the buffer's oom) or failed step (failed) makes the whole document fail. */
struct thumb {
    int version; /* 0: an empty slot */
    uint32_t w, h, tw, th;
    bool sized;
    char path[256];
};

#define THUMB_CACHE 16

struct ctx {
    struct strbuf out;       /* the document */
    bool comma;            /* the container being written has a value: the next needs a ',' */
    bool failed;
    const char *base;
    char *obj;             /* {base}/presentation/{v}/{pct(id)} */
    struct strbuf url;       /* scratch for one URL at a time */
    struct strbuf ib[2];     /* image bases {base}/iiif/{2,3}/{pct(image)}, of the images ib_src */
    const char *ib_src[2];
    struct thumb thumbs[THUMB_CACHE]; /* planned thumbnails by image size (many pages share one) */
};

/* Whether any of the 8 bytes at s is one JSON escapes: below 0x20, '"' or '\\'. The classic bit
 * tricks: (v - 0x01..) & ~v & 0x80.. is non-zero when v has a zero byte (so x ^ '"'.. tests for
 * '"'), and (x - 0x20..) & ~x & 0x80.. when x has a byte below 0x20. */
static bool word_escapes(const char *s)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t x;
    memcpy(&x, s, 8);
    uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
    return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high;
}

/* True when s (n bytes) has nothing JSON escapes, so it can be copied as it is. */
static bool json_plain(const char *s, size_t n)
{
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            if (word_escapes(s + i))
                return false;
        /* the rest as the last 8 bytes, overlapping what was checked */
        return i == n || !word_escapes(s + n - 8);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == '"' || ch == '\\')
            return false;
    }
    return true;
}

/* s (n bytes) as a JSON string, escaped exactly as cJSON escapes it. */
static void put_json_string(struct strbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (json_plain(s, n)) {
        char *p = strbuf_room(b, n + 2);
        if (p) {
            p[0] = '"';
            memcpy(p + 1, s, n);
            p[n + 1] = '"';
            strbuf_commit(b, n + 2);
        }
        return;
    }
    strbuf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        strbuf_put(b, s + run, i - run);
        run = i + 1;
        char e[6] = {'\\', (char)ch, 0, 0, 0, 0};
        switch (ch) {
        case '"':
        case '\\':
            break;
        case '\b':
            e[1] = 'b';
            break;
        case '\f':
            e[1] = 'f';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        default:
            e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[ch >> 4], e[5] = hex[ch & 15];
            strbuf_put(b, e, 6);
            continue;
        }
        strbuf_put(b, e, 2);
    }
    strbuf_put(b, s + run, n - run);
    strbuf_putc(b, '"');
}

/* Unsigned decimal into buf (at least 21 bytes); returns its length. */
static size_t fmt_size(char *buf, size_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

/* The separator before a value, and its key inside an object (key NULL: an array element).
 * Keys are string literals or language keys (lang_key: letters and '-'), so nothing in them
 * needs escaping. */
static void put_key(struct ctx *c, const char *key)
{
    size_t n = key ? strlen(key) : 0;
    char *p = strbuf_room(&c->out, n + 4);
    if (!p)
        return;
    size_t k = 0;
    if (c->comma)
        p[k++] = ',';
    if (key) {
        p[k++] = '"';
        memcpy(p + k, key, n);
        k += n;
        p[k++] = '"';
        p[k++] = ':';
    }
    strbuf_commit(&c->out, k);
}

static void put_strn(struct ctx *c, const char *key, const char *v, size_t n)
{
    put_key(c, key);
    put_json_string(&c->out, v, n);
    c->comma = true;
}

static void put_str(struct ctx *c, const char *key, const char *v)
{
    if (!v) { /* cJSON_CreateString(NULL) failed the document */
        c->failed = true;
        return;
    }
    put_strn(c, key, v, strlen(v));
}

static void put_num(struct ctx *c, const char *key, uint32_t v)
{
    char d[24];
    size_t n = fmt_size(d, v);
    put_key(c, key);
    strbuf_put(&c->out, d, n);
    c->comma = true;
}

static void open_obj(struct ctx *c, const char *key)
{
    put_key(c, key);
    strbuf_putc(&c->out, '{');
    c->comma = false;
}

static void close_obj(struct ctx *c)
{
    strbuf_putc(&c->out, '}');
    c->comma = true;
}

static void open_arr(struct ctx *c, const char *key)
{
    put_key(c, key);
    strbuf_putc(&c->out, '[');
    c->comma = false;
}

static void close_arr(struct ctx *c)
{
    strbuf_putc(&c->out, ']');
    c->comma = true;
}

/* A cJSON value (deleted here), printed by cJSON. */
static void put_cjson(struct ctx *c, const char *key, cJSON *item)
{
    char *text = item ? cJSON_PrintUnformatted(item) : NULL;
    cJSON_Delete(item);
    if (!text) {
        c->failed = true;
        return;
    }
    put_key(c, key);
    strbuf_puts(&c->out, text);
    c->comma = true;
    free(text);
}

/* A text value as manifest_text makes it. A value without '<' has no markup and cannot look
 * like HTML, so manifest_text would return it unchanged: nearly every value takes that path. */
static void put_text(struct ctx *c, const char *key, const char *v, enum manifest_text kind)
{
    if (!strchr(v, '<')) {
        put_str(c, key, v);
        return;
    }
    char *t = manifest_text(v, kind);
    if (!t) {
        c->failed = true;
        return;
    }
    put_str(c, key, t);
    free(t);
}

/* The URL a + b + n (when n > 0, in decimal) + d as a string value (b and d may be NULL). */
static void put_link(struct ctx *c, const char *key, const char *a, const char *b, size_t n,
                     const char *d)
{
    c->url.len = 0;
    strbuf_puts(&c->url, a);
    if (b)
        strbuf_puts(&c->url, b);
    if (n) {
        char num[24];
        strbuf_put(&c->url, num, fmt_size(num, n));
    }
    if (d)
        strbuf_puts(&c->url, d);
    if (c->url.oom || !c->url.p) {
        c->failed = true;
        return;
    }
    put_strn(c, key, c->url.p, c->url.len);
}

/* {base}/{api}/{v}/ + pct(s) appended to b. */
static void sb_encoded(struct strbuf *b, const char *base, const char *api, int v, const char *s)
{
    strbuf_puts(b, base);
    strbuf_putc(b, '/');
    strbuf_puts(b, api);
    strbuf_putc(b, '/');
    strbuf_putc(b, (char)('0' + v));
    strbuf_putc(b, '/');
    sb_pct(b, s);
}

/* {base}/iiif/{v}/{pct(image)} (v 2 or 3), valid until the next call for another image: a
 * canvas uses its image's bases two or three times. */
static const char *image_base(struct ctx *c, int v, const char *image)
{
    int k = v == 3;
    if (c->ib_src[k] != image || !c->ib[k].p) {
        c->ib[k].len = 0;
        sb_encoded(&c->ib[k], c->base, "iiif", v, image);
        c->ib_src[k] = image;
    }
    if (c->ib[k].oom || !c->ib[k].p) {
        c->failed = true;
        return "";
    }
    return c->ib[k].p;
}

static void ctx_init(struct ctx *c, const char *base, int version, const char *id,
                     size_t size_hint)
{
    memset(c, 0, sizeof *c);
    c->base = base;
    if (id) {
        struct strbuf b = {0};
        sb_encoded(&b, base, "presentation", version, id);
        c->obj = strbuf_take(&b);
        if (!c->obj)
            c->failed = true;
    }
    /* One allocation for most documents (the buffer doubles when this is short). */
    c->out.p = malloc(size_hint);
    if (c->out.p) {
        c->out.cap = size_hint;
        c->out.p[0] = '\0';
    } else {
        c->out.oom = true;
    }
}

/* The document text, or NULL with err when anything failed. */
static char *finish(struct ctx *c, struct verr *err, const char *what)
{
    char *text = NULL;
    if (!c->failed && !c->out.oom && c->out.p)
        text = c->out.p;
    else
        free(c->out.p);
    free(c->obj);
    free(c->url.p);
    free(c->ib[0].p);
    free(c->ib[1].p);
    if (!text)
        verr_set(err, 500, "out of memory building the %s", what);
    return text;
}

/* ---- language maps --------------------------------------------------------------------------- */

/* The map key for a stored language: "none" when untagged. The official schema accepts only
 * letters and '-' in keys (G12), so subtags with digits ("es-419", "de-CH-1901") are cut off at
 * the first such subtag; '_' is read as '-'; anything else unusable becomes "none". */
static const char *lang_key(const char *lang, char *buf, size_t len)
{
    if (!lang || !*lang || !strcmp(lang, "none"))
        return "none";
    size_t n = 0;
    for (const char *p = lang; *p; p++) {
        char ch = *p == '_' ? '-' : *p;
        if (ch >= '0' && ch <= '9') {
            while (n > 0 && buf[n - 1] != '-') /* drop the subtag holding the digit */
                n--;
            break;
        }
        if (!is_alpha(ch) && ch != '-')
            return "none";
        if (n + 1 >= len)
            return "none";
        buf[n++] = ch;
    }
    while (n > 0 && buf[n - 1] == '-')
        n--;
    if (n == 0)
        return "none";
    buf[n] = '\0';
    return buf;
}

/* A 3.0 language map: {"en": ["..."], "none": ["..."]}; the languages in the order of their
 * first value, each with its values in order. fallback (may be NULL) is used, untagged, when
 * the map is empty. */
static void lang_map(struct ctx *c, const char *key, const struct db_lang_map *m,
                     enum manifest_text kind, const char *fallback)
{
    open_obj(c, key);
    size_t n = m ? m->n : 0, used = 0;
    char small_keys[4][64];
    bool small_done[4];
    char(*keys)[64] = small_keys;
    bool *done = small_done;
    if (n > 4) {
        keys = malloc(n * sizeof *keys);
        done = malloc(n * sizeof *done);
        if (!keys || !done) {
            c->failed = true;
            n = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        done[i] = !m->items[i].value;
        if (done[i])
            continue;
        const char *k = lang_key(m->items[i].lang, keys[i], sizeof keys[i]);
        if (k != keys[i])
            strcpy(keys[i], k);
    }
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        open_arr(c, keys[i]);
        for (size_t j = i; j < n; j++) {
            if (done[j] || strcmp(keys[j], keys[i]))
                continue;
            put_text(c, NULL, m->items[j].value, kind);
            done[j] = true;
            used++;
        }
        close_arr(c);
    }
    if (keys != small_keys) {
        free(keys);
        free(done);
    }
    if (!used && fallback) {
        open_arr(c, "none");
        put_text(c, NULL, fallback, MANIFEST_TEXT_PLAIN);
        close_arr(c);
    }
    close_obj(c);
}

static bool map_empty(const struct db_lang_map *m)
{
    for (size_t i = 0; m && i < m->n; i++)
        if (m->items[i].value)
            return false;
    return true;
}

static void put_map(struct ctx *c, const char *key, const struct db_lang_map *m,
                    enum manifest_text kind, const char *fallback)
{
    if (map_empty(m) && !fallback)
        return;
    lang_map(c, key, m, kind, fallback);
}

/* A 2.1 value: a string, {"@value", "@language"}, or an array of them (D); left out when empty
 * and there is no fallback. */
static void put_value2(struct ctx *c, const char *key, const struct db_lang_map *m,
                       enum manifest_text kind, const char *fallback)
{
    size_t n = 0;
    for (size_t i = 0; m && i < m->n; i++)
        n += m->items[i].value != NULL;
    if (!n) {
        if (fallback)
            put_text(c, key, fallback, MANIFEST_TEXT_PLAIN);
        return;
    }
    if (n > 1)
        open_arr(c, key);
    const char *slot = n > 1 ? NULL : key;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->items[i].value)
            continue;
        char kb[64];
        const char *lang = lang_key(m->items[i].lang, kb, sizeof kb);
        if (!strcmp(lang, "none")) {
            put_text(c, slot, m->items[i].value, kind);
        } else {
            open_obj(c, slot);
            put_text(c, "@value", m->items[i].value, kind);
            put_str(c, "@language", lang);
            close_obj(c);
        }
    }
    if (n > 1)
        close_arr(c);
}

/* ---- property values ----------------------------------------------------------------------- */

/* 3.0 `rights` (SPECS C3, G12): the official schema accepts only
 * http://creativecommons.org/licenses/..., .../publicdomain/... and
 * http://rightsstatements.org/vocab/... . Both organisations publish their URIs in http form
 * (the https pages are the same resources), so https is rewritten to http, and a
 * rightsstatements.org human page (/page/) to its vocabulary URI (/vocab/). Returns false when
 * the value is none of these: the caller then shows it in metadata instead. */
static bool normalise_rights(const char *in, char *out, size_t len)
{
    static const char *const ok[] = {"http://creativecommons.org/licenses/",
                                     "http://creativecommons.org/publicdomain/",
                                     "http://rightsstatements.org/vocab/"};
    const char *rest = in;
    if (!strncmp(rest, "https://", 8))
        rest += 8;
    else if (!strncmp(rest, "http://", 7))
        rest += 7;
    else
        return false;
    if (!strncmp(rest, "www.creativecommons.org/", 24))
        rest += 4;
    int n;
    if (!strncmp(rest, "rightsstatements.org/page/", 26))
        n = snprintf(out, len, "http://rightsstatements.org/vocab/%s", rest + 26);
    else
        n = snprintf(out, len, "http://%s", rest);
    if (n < 0 || (size_t)n >= len)
        return false;
    for (const char *p = out; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == '"' || *p == '<' || *p == '>')
            return false;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strncmp(out, ok[i], strlen(ok[i])) && strlen(out) > strlen(ok[i]))
            return true;
    return false;
}

static bool digits(const char *p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        *v = *v * 10 + (p[i] - '0');
    }
    return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* navDate (SPECS C3, D): an xsd:dateTime with a timezone. Accepts YYYY-MM-DD, with
 * Thh:mm[:ss[.fff]] and Z or +hh:mm / -hh:mm; a missing time is midnight, a missing zone is UTC.
 * utc (2.1) converts to YYYY-MM-DDThh:mm:ssZ. False for anything else (the property is left out).
 */
static bool normalise_date(const char *in, bool utc, char *out, size_t len)
{
    int y, mo, d, h = 0, mi = 0, s = 0, oh = 0, om = 0, sign = 0;
    const char *p = in, *frac = NULL;
    size_t frac_len = 0;
    if (strlen(p) < 10 || !digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) ||
        p[7] != '-' || !digits(p + 8, 2, &d))
        return false;
    p += 10;
    if (*p == 'T') {
        if (!digits(p + 1, 2, &h) || p[3] != ':' || !digits(p + 4, 2, &mi))
            return false;
        p += 6;
        if (*p == ':') {
            if (!digits(p + 1, 2, &s))
                return false;
            p += 3;
            if (*p == '.') {
                frac = p;
                p++;
                while (*p >= '0' && *p <= '9')
                    p++;
                frac_len = (size_t)(p - frac);
                if (frac_len < 2 || frac_len > 10)
                    return false;
            }
        }
    }
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 14 || om > 59)
            return false;
        p += 6;
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (*p || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || s > 59)
        return false;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    int n;
    if (utc) {
        int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s -
                    sign * (oh * 3600 + om * 60);
        int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
        int64_t sec = t - days * 86400, yy;
        civil_from_days(days, &yy, &mo, &d);
        if (yy < 0 || yy > 9999)
            return false;
        n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)yy, mo, d, (int)(sec / 3600),
                     (int)(sec / 60 % 60), (int)(sec % 60));
    } else if (sign) {
        n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d%.*s%c%02d:%02d", y, mo, d, h, mi, s,
                     (int)frac_len, frac ? frac : "", sign > 0 ? '+' : '-', oh, om);
    } else {
        n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d%.*sZ", y, mo, d, h, mi, s,
                     (int)frac_len, frac ? frac : "");
    }
    return n > 0 && (size_t)n < len;
}

static bool valid_direction(const char *v)
{
    return v && (!strcmp(v, "left-to-right") || !strcmp(v, "right-to-left") ||
                 !strcmp(v, "top-to-bottom") || !strcmp(v, "bottom-to-top"));
}

/* Behaviors a Manifest may carry (SPECS C3 table); canvas- or range-only values are dropped. */
static bool manifest_behavior(const char *v)
{
    static const char *const ok[] = {"auto-advance", "no-auto-advance", "repeat",     "no-repeat",
                                     "unordered",    "individuals",     "continuous", "paged"};
    for (size_t i = 0; v && i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(v, ok[i]))
            return true;
    return false;
}

static bool is_http_uri(const char *s)
{
    return s && (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8)) && !strchr(s, ' ');
}

/* ---- images -------------------------------------------------------------------------------- */

/* The image path "{region}/{size}/0/default.jpg" and output size of a thumbnail, planned by the
 * Image API code itself so the URL is exactly what the server answers (canonical form). */
static bool thumb_plan(int version, uint32_t w, uint32_t h, char *path, size_t len, uint32_t *tw,
                       uint32_t *th)
{
    enum iiif_version v = version == 3 ? IIIF_V3 : IIIF_V2;
    struct iiif_limits none = {0, 0, 0};
    struct iiif_params p;
    struct iiif_plan plan;
    struct verr e;
    const char *size = w <= THUMB_PX && h <= THUMB_PX ? (version == 3 ? "max" : "full") : THUMB_BOX;
    if (iiif_parse(v, "full", size, "0", "default.jpg", &p, &e) < 0 ||
        iiif_plan_request(&p, w, h, &none, &plan, &e) < 0 ||
        iiif_canonical(&plan, v, w, h, &none, path, len) < 0)
        return false;
    *tw = plan.out_w;
    *th = plan.out_h;
    return true;
}


/* thumb_plan for this document, remembered by size; *path is the image path to use either way
 * (the "!200,200" request when no size could be planned). */
static bool thumb_path(struct ctx *c, int version, uint32_t w, uint32_t h, const char **path,
                       uint32_t *tw, uint32_t *th)
{
    struct thumb *t = &c->thumbs[(w * 31u + h * 17u + (uint32_t)version) % THUMB_CACHE];
    if (t->version != version || t->w != w || t->h != h) {
        t->version = version;
        t->w = w;
        t->h = h;
        t->tw = t->th = 0;
        t->sized = thumb_plan(version, w, h, t->path, sizeof t->path, &t->tw, &t->th);
        if (!t->sized)
            snprintf(t->path, sizeof t->path, "full/%s/0/default.jpg", THUMB_BOX);
    }
    *path = t->path;
    *tw = t->tw;
    *th = t->th;
    return t->sized;
}

static void service3(struct ctx *c, const char *image_base3)
{
    open_obj(c, NULL);
    put_str(c, "id", image_base3);
    put_str(c, "type", "ImageService3");
    put_str(c, "profile", "level2");
    close_obj(c);
}

/* SPECS C5: the same image is also served by Image API 2.1; older clients look for it. */
static void service2_in3(struct ctx *c, const char *image_base2)
{
    open_obj(c, NULL);
    put_str(c, "@id", image_base2);
    put_str(c, "@type", "ImageService2");
    put_str(c, "profile", "http://iiif.io/api/image/2/level2.json");
    close_obj(c);
}

/* A 3.0 thumbnail list with one image: a planned size when the image size is known, else a
 * "!200,200" request (which the server always answers within the image). */
static void thumbnail3(struct ctx *c, const char *image, uint32_t w, uint32_t h)
{
    const char *ib = image_base(c, 3, image);
    const char *path = NULL;
    uint32_t tw = 0, th = 0;
    bool sized = w && h && thumb_path(c, 3, w, h, &path, &tw, &th);
    open_arr(c, "thumbnail");
    open_obj(c, NULL);
    if (path)
        put_link(c, "id", ib, "/", 0, path);
    else
        put_link(c, "id", ib, "/full/" THUMB_BOX "/0/default.jpg", 0, NULL);
    put_str(c, "type", "Image");
    put_str(c, "format", "image/jpeg");
    if (sized) {
        put_num(c, "width", tw);
        put_num(c, "height", th);
    }
    open_arr(c, "service");
    service3(c, ib);
    close_arr(c);
    close_obj(c);
    close_arr(c);
}

/* ---- 3.0 ----------------------------------------------------------------------------------- */

static void canvas3(struct ctx *c, const struct db_object *obj, size_t i, bool top)
{
    const struct db_canvas *cv = &obj->canvases[i];
    size_t n = i + 1;
    open_obj(c, NULL);
    if (top)
        put_str(c, "@context", "http://iiif.io/api/presentation/3/context.json");
    put_link(c, "id", c->obj, "/canvas/", n, NULL);
    put_str(c, "type", "Canvas");
    put_map(c, "label", &cv->label, MANIFEST_TEXT_PLAIN, NULL);
    put_num(c, "width", cv->width);
    put_num(c, "height", cv->height);
    if (cv->image)
        thumbnail3(c, cv->image, cv->width, cv->height);
    if (top) {
        /* A Canvas fetched on its own says which Manifest it belongs to (3.0 §3.3.4 partOf). */
        open_arr(c, "partOf");
        open_obj(c, NULL);
        put_link(c, "id", c->obj, "/manifest", 0, NULL);
        put_str(c, "type", "Manifest");
        close_obj(c);
        close_arr(c);
    }
    open_arr(c, "items");
    open_obj(c, NULL); /* the AnnotationPage */
    put_link(c, "id", c->obj, "/canvas/", n, "/page");
    put_str(c, "type", "AnnotationPage");
    open_arr(c, "items");
    open_obj(c, NULL); /* the Annotation */
    put_link(c, "id", c->obj, "/canvas/", n, "/annotation");
    put_str(c, "type", "Annotation");
    put_str(c, "motivation", "painting");
    open_obj(c, "body");
    const char *image = cv->image ? cv->image : "";
    const char *ib = image_base(c, 3, image);
    put_link(c, "id", ib, "/full/max/0/default.jpg", 0, NULL);
    put_str(c, "type", "Image");
    put_str(c, "format", "image/jpeg");
    put_num(c, "width", cv->width);
    put_num(c, "height", cv->height);
    open_arr(c, "service");
    service3(c, ib);
    service2_in3(c, image_base(c, 2, image));
    close_arr(c);
    close_obj(c); /* body */
    put_link(c, "target", c->obj, "/canvas/", n, NULL);
    close_obj(c);
    close_arr(c);
    close_obj(c);
    close_arr(c);
    close_obj(c);
}

/* The first valid canvas index a range covers (itself or nested), to order its items. */
static size_t range_first(const struct db_range *r, size_t ncanvases, int depth)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < r->ncanvases; i++)
        if (r->canvases[i] < ncanvases && r->canvases[i] < best)
            best = r->canvases[i];
    for (size_t i = 0; depth < MAX_RANGE_DEPTH && i < r->nranges; i++) {
        size_t f = range_first(&r->ranges[i], ncanvases, depth + 1);
        if (f < best)
            best = f;
    }
    return best;
}

/* A Range: "{manifest base}/range/{path}" where path is the 1-based position at each level
 * ("2.1" is the first range inside the second top-level range). db keeps a range's canvases and
 * sub-ranges as two lists, so they are merged by the first canvas each covers, which is the
 * reading order of a table of contents. */
static void range3(struct ctx *c, const struct db_object *obj, const struct db_range *r,
                   const char *path, int depth)
{
    open_obj(c, NULL);
    put_link(c, "id", c->obj, "/range/", 0, path);
    put_str(c, "type", "Range");
    put_map(c, "label", &r->label, MANIFEST_TEXT_PLAIN, NULL);
    open_arr(c, "items");
    size_t ci = 0, ri = 0;
    size_t nr = depth < MAX_RANGE_DEPTH ? r->nranges : 0;
    size_t first = ri < nr ? range_first(&r->ranges[ri], obj->ncanvases, depth + 1) : SIZE_MAX;
    while (ci < r->ncanvases || ri < nr) {
        bool take_canvas = ci < r->ncanvases && (ri >= nr || r->canvases[ci] <= first);
        if (take_canvas) {
            size_t k = r->canvases[ci++];
            if (k >= obj->ncanvases)
                continue;
            open_obj(c, NULL);
            put_link(c, "id", c->obj, "/canvas/", k + 1, NULL);
            put_str(c, "type", "Canvas");
            close_obj(c);
        } else {
            char sub[512];
            int n = snprintf(sub, sizeof sub, "%s.%zu", path, ri + 1);
            if (n < 0 || (size_t)n >= sizeof sub) {
                c->failed = true;
                break;
            }
            range3(c, obj, &r->ranges[ri++], sub, depth + 1);
            if (ri < nr)
                first = range_first(&r->ranges[ri], obj->ncanvases, depth + 1);
        }
    }
    close_arr(c);
    close_obj(c);
}

/* A link property from extra_json (provider, homepage, seeAlso, rendering, thumbnail): kept
 * when it is an array (or one object) of objects with an http(s) id and a type; a string label
 * becomes a language map, an invalid format and any @context are removed (G12, C4). NULL when
 * nothing usable is there. */
static cJSON *extra_links(struct ctx *c, const cJSON *extra, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(extra, key);
    if (!v || !(cJSON_IsArray(v) || cJSON_IsObject(v)))
        return NULL;
    cJSON *out = cJSON_CreateArray();
    if (!out) {
        c->failed = true;
        return NULL;
    }
    const cJSON *item = cJSON_IsArray(v) ? v->child : v;
    for (; item; item = cJSON_IsArray(v) ? item->next : NULL) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");
        if (!cJSON_IsObject(item) || !cJSON_IsString(id) || !is_http_uri(id->valuestring) ||
            !cJSON_IsString(type) || !*type->valuestring)
            continue;
        if (!strcmp(key, "provider") && strcmp(type->valuestring, "Agent"))
            continue;
        cJSON *d = cJSON_Duplicate(item, true);
        if (!d || !cJSON_AddItemToArray(out, d)) {
            cJSON_Delete(d);
            c->failed = true;
            break;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(d, "@context");
        cJSON *label = cJSON_GetObjectItemCaseSensitive(d, "label");
        if (cJSON_IsString(label)) {
            cJSON *map = cJSON_CreateObject();
            cJSON *arr = map ? cJSON_AddArrayToObject(map, "none") : NULL;
            cJSON *s = cJSON_CreateString(label->valuestring);
            if (!arr || !s || !cJSON_AddItemToArray(arr, s)) {
                cJSON_Delete(s);
                c->failed = true;
            }
            if (map && !cJSON_ReplaceItemInObjectCaseSensitive(d, "label", map)) {
                cJSON_Delete(map);
                c->failed = true;
            }
        } else if (label && !cJSON_IsObject(label)) {
            cJSON_DeleteItemFromObjectCaseSensitive(d, "label");
        }
        const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(d, "format");
        if (fmt && !(cJSON_IsString(fmt) && fmt->valuestring[0] >= 'a' &&
                     fmt->valuestring[0] <= 'z' && strchr(fmt->valuestring, '/')))
            cJSON_DeleteItemFromObjectCaseSensitive(d, "format");
    }
    if (!cJSON_GetArraySize(out)) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

static void put_pair3(struct ctx *c, const struct db_pair *p)
{
    lang_map(c, "label", &p->label, MANIFEST_TEXT_PLAIN, NULL);
    lang_map(c, "value", &p->value, MANIFEST_TEXT_HTML3, NULL);
}

static void manifest3(struct ctx *c, const struct db_object *obj)
{
    cJSON *extra = obj->extra_json ? cJSON_Parse(obj->extra_json) : NULL;
    open_obj(c, NULL);
    put_str(c, "@context", "http://iiif.io/api/presentation/3/context.json");
    put_link(c, "id", c->obj, "/manifest", 0, NULL);
    put_str(c, "type", "Manifest");
    /* label is required: an object without one is named by its identifier. */
    put_map(c, "label", &obj->label, MANIFEST_TEXT_PLAIN, obj->id);
    put_map(c, "summary", &obj->summary, MANIFEST_TEXT_HTML3, NULL);

    char rights[1024];
    bool rights_ok = obj->rights && normalise_rights(obj->rights, rights, sizeof rights);
    bool rights_in_metadata = obj->rights && *obj->rights && !rights_ok;
    if (obj->nmetadata || rights_in_metadata) {
        open_arr(c, "metadata");
        for (size_t i = 0; i < obj->nmetadata; i++) {
            open_obj(c, NULL);
            put_pair3(c, &obj->metadata[i]);
            close_obj(c);
        }
        if (rights_in_metadata) {
            /* 3.0 §3.2.1 rights allows only CC, RightsStatements.org or registered extension
             * URIs; any other statement is still shown to people, as metadata. */
            open_obj(c, NULL);
            open_obj(c, "label");
            open_arr(c, "en");
            put_str(c, NULL, "Rights");
            close_arr(c);
            close_obj(c);
            open_obj(c, "value");
            open_arr(c, "none");
            put_text(c, NULL, obj->rights, MANIFEST_TEXT_HTML3);
            close_arr(c);
            close_obj(c);
            close_obj(c);
        }
        close_arr(c);
    }
    if (obj->has_required_statement) {
        open_obj(c, "requiredStatement");
        put_pair3(c, &obj->required_statement);
        close_obj(c);
    }
    if (rights_ok)
        put_str(c, "rights", rights);
    char date[64];
    if (obj->nav_date && normalise_date(obj->nav_date, false, date, sizeof date))
        put_str(c, "navDate", date);
    if (valid_direction(obj->viewing_direction))
        put_str(c, "viewingDirection", obj->viewing_direction);
    bool beh = false;
    for (size_t i = 0; i < obj->nbehavior; i++) {
        if (!manifest_behavior(obj->behavior[i]))
            continue;
        if (!beh)
            open_arr(c, "behavior");
        beh = true;
        put_str(c, NULL, obj->behavior[i]);
    }
    if (beh)
        close_arr(c);
    static const char *const links[] = {"provider", "homepage", "seeAlso", "rendering"};
    for (size_t i = 0; extra && i < sizeof links / sizeof links[0]; i++) {
        cJSON *l = extra_links(c, extra, links[i]);
        if (l)
            put_cjson(c, links[i], l);
    }
    cJSON *thumb = extra ? extra_links(c, extra, "thumbnail") : NULL;
    if (thumb)
        put_cjson(c, "thumbnail", thumb);
    else if (obj->ncanvases && obj->canvases[0].image)
        thumbnail3(c, obj->canvases[0].image, obj->canvases[0].width, obj->canvases[0].height);
    cJSON_Delete(extra);

    open_arr(c, "items");
    for (size_t i = 0; i < obj->ncanvases; i++)
        canvas3(c, obj, i, false);
    close_arr(c);
    if (obj->nranges) {
        open_arr(c, "structures");
        for (size_t i = 0; i < obj->nranges; i++) {
            char path[32];
            snprintf(path, sizeof path, "%zu", i + 1);
            range3(c, obj, &obj->ranges[i], path, 1);
        }
        close_arr(c);
    }
    close_obj(c);
}

/* Canvases need a size: the schema requires width/height (or duration), and import reads it. */
static int check_canvases(const struct db_object *obj, struct verr *err)
{
    if (!obj->ncanvases)
        return verr_set(err, 500, "object %.100s has no canvases (a Manifest needs at least one)",
                        obj->id);
    for (size_t i = 0; i < obj->ncanvases; i++)
        if (!obj->canvases[i].width || !obj->canvases[i].height || !obj->canvases[i].image)
            return verr_set(err, 500, "canvas %zu of object %.100s has no image or no size", i + 1,
                            obj->id);
    return 0;
}

/* What a document of n canvases takes, roughly (the buffer grows when it is more). */
static size_t size_hint(size_t ncanvases)
{
    return 4096 + (ncanvases < 100000 ? ncanvases : 100000) * 1536;
}

char *manifest_presentation3(const struct db_object *obj, const char *base, struct verr *err)
{
    if (check_canvases(obj, err) < 0)
        return NULL;
    struct ctx c;
    ctx_init(&c, base, 3, obj->id, size_hint(obj->ncanvases));
    if (!c.failed)
        manifest3(&c, obj);
    return finish(&c, err, "manifest");
}

char *manifest_canvas3(const struct db_object *obj, size_t index, const char *base,
                       struct verr *err)
{
    if (index >= obj->ncanvases) {
        verr_set(err, 404, "object %.100s has %zu canvases; there is no canvas %zu", obj->id,
                 obj->ncanvases, index + 1);
        return NULL;
    }
    if (check_canvases(obj, err) < 0)
        return NULL;
    struct ctx c;
    ctx_init(&c, base, 3, obj->id, size_hint(1));
    if (!c.failed)
        canvas3(&c, obj, index, true);
    return finish(&c, err, "canvas");
}

/* Collections live at {base}/presentation/{v}/collection/{pct(name)}; the top level (name "")
 * at {base}/presentation/{v}/collection, so no collection name is taken by it. */
static void put_collection_url(struct ctx *c, const char *key, int version, const char *name)
{
    c->url.len = 0;
    strbuf_puts(&c->url, c->base);
    strbuf_puts(&c->url, version == 3 ? "/presentation/3/collection" : "/presentation/2/collection");
    if (name && *name) {
        strbuf_putc(&c->url, '/');
        sb_pct(&c->url, name);
    }
    if (c->url.oom || !c->url.p) {
        c->failed = true;
        return;
    }
    put_strn(c, key, c->url.p, c->url.len);
}

/* {base}/presentation/{v}/{pct(id)}/manifest */
static void put_manifest_url(struct ctx *c, const char *key, int version, const char *id)
{
    c->url.len = 0;
    sb_encoded(&c->url, c->base, "presentation", version, id);
    strbuf_puts(&c->url, "/manifest");
    if (c->url.oom || !c->url.p) {
        c->failed = true;
        return;
    }
    put_strn(c, key, c->url.p, c->url.len);
}

char *manifest_collection3(const struct db_collection *col, const char *base, struct verr *err)
{
    struct ctx c;
    ctx_init(&c, base, 3, NULL, 4096 + col->nitems * 512);
    open_obj(&c, NULL);
    put_str(&c, "@context", "http://iiif.io/api/presentation/3/context.json");
    put_collection_url(&c, "id", 3, col->name);
    put_str(&c, "type", "Collection");
    bool top = !col->name || !*col->name;
    put_map(&c, "label", &col->label, MANIFEST_TEXT_PLAIN, top ? "All collections" : col->name);
    open_arr(&c, "items");
    for (size_t i = 0; i < col->nitems; i++) {
        const struct db_collection_item *it = &col->items[i];
        if (!it->id || !*it->id)
            continue;
        open_obj(&c, NULL);
        if (it->is_collection) {
            put_collection_url(&c, "id", 3, it->id);
            put_str(&c, "type", "Collection");
        } else {
            put_manifest_url(&c, "id", 3, it->id);
            put_str(&c, "type", "Manifest");
        }
        /* Referenced Collections and Manifests MUST have a label (C1). */
        put_map(&c, "label", &it->label, MANIFEST_TEXT_PLAIN, it->id);
        if (!it->is_collection && it->thumbnail_image)
            thumbnail3(&c, it->thumbnail_image, 0, 0);
        close_obj(&c);
    }
    close_arr(&c);
    close_obj(&c);
    return finish(&c, err, "collection");
}

/* ---- 2.1 ----------------------------------------------------------------------------------- */

static void service2(struct ctx *c, const char *image_base2)
{
    open_obj(c, "service");
    /* D: an embedded image service carries its own @context (REQUIRED). */
    put_str(c, "@context", "http://iiif.io/api/image/2/context.json");
    put_str(c, "@id", image_base2);
    put_str(c, "profile", "http://iiif.io/api/image/2/level2.json");
    close_obj(c);
}

static void thumbnail2(struct ctx *c, const char *image, uint32_t w, uint32_t h)
{
    const char *ib = image_base(c, 2, image);
    const char *path;
    uint32_t tw, th;
    bool sized = thumb_path(c, 2, w, h, &path, &tw, &th);
    open_obj(c, "thumbnail");
    put_link(c, "@id", ib, "/", 0, path);
    put_str(c, "@type", "dctypes:Image");
    put_str(c, "format", "image/jpeg");
    if (sized) {
        put_num(c, "width", tw);
        put_num(c, "height", th);
    }
    service2(c, ib);
    close_obj(c);
}

static void canvas2(struct ctx *c, const struct db_object *obj, size_t i)
{
    const struct db_canvas *cv = &obj->canvases[i];
    size_t n = i + 1;
    char num[32];
    fmt_size(num, n);
    open_obj(c, NULL);
    put_link(c, "@id", c->obj, "/canvas/", n, NULL);
    put_str(c, "@type", "sc:Canvas");
    /* 2.1 requires a Canvas label: the page number when the catalogue has none. */
    put_value2(c, "label", &cv->label, MANIFEST_TEXT_PLAIN, num);
    put_num(c, "width", cv->width);
    put_num(c, "height", cv->height);
    thumbnail2(c, cv->image, cv->width, cv->height);
    open_arr(c, "images");
    open_obj(c, NULL);
    put_link(c, "@id", c->obj, "/annotation/", n, NULL);
    put_str(c, "@type", "oa:Annotation");
    put_str(c, "motivation", "sc:painting");
    open_obj(c, "resource");
    const char *ib = image_base(c, 2, cv->image);
    put_link(c, "@id", ib, "/full/full/0/default.jpg", 0, NULL);
    put_str(c, "@type", "dctypes:Image");
    put_str(c, "format", "image/jpeg");
    put_num(c, "width", cv->width);
    put_num(c, "height", cv->height);
    service2(c, ib);
    close_obj(c); /* resource */
    put_link(c, "on", c->obj, "/canvas/", n, NULL);
    close_obj(c);
    close_arr(c);
    close_obj(c);
}

/* 2.1 structures are one flat list of every Range (pre-order), children named by @id in
 * "ranges" and pages in "canvases"; roots carry viewingHint "top" (D). Same ids as 3.0. */
static void ranges2(struct ctx *c, const struct db_object *obj, const struct db_range *r,
                    const char *path, int depth)
{
    open_obj(c, NULL);
    put_link(c, "@id", c->obj, "/range/", 0, path);
    put_str(c, "@type", "sc:Range");
    char fallback[600];
    snprintf(fallback, sizeof fallback, "Section %s", path);
    put_value2(c, "label", &r->label, MANIFEST_TEXT_PLAIN, fallback);
    if (depth == 1)
        put_str(c, "viewingHint", "top");
    bool cvs = false;
    for (size_t i = 0; i < r->ncanvases; i++) {
        if (r->canvases[i] >= obj->ncanvases)
            continue;
        if (!cvs)
            open_arr(c, "canvases");
        cvs = true;
        put_link(c, NULL, c->obj, "/canvas/", r->canvases[i] + 1, NULL);
    }
    if (cvs)
        close_arr(c);
    size_t nr = depth < MAX_RANGE_DEPTH ? r->nranges : 0;
    if (nr) {
        open_arr(c, "ranges");
        for (size_t i = 0; i < nr; i++) {
            char p[512];
            int n = snprintf(p, sizeof p, "%s.%zu", path, i + 1);
            if (n < 0 || (size_t)n >= sizeof p) {
                c->failed = true;
                return;
            }
            put_link(c, NULL, c->obj, "/range/", 0, p);
        }
        close_arr(c);
    }
    close_obj(c);
    for (size_t i = 0; i < nr; i++) {
        char p[512];
        int n = snprintf(p, sizeof p, "%s.%zu", path, i + 1);
        if (n < 0 || (size_t)n >= sizeof p) {
            c->failed = true;
            return;
        }
        ranges2(c, obj, &r->ranges[i], p, depth + 1);
    }
}

/* extra_json links in 2.1 form: {"@id", "format", "label", "profile"} (homepage is "related"). */
static void extra_links2(struct ctx *c, const cJSON *extra, const char *key, const char *key2)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(extra, key);
    if (!v || !(cJSON_IsArray(v) || cJSON_IsObject(v)))
        return;
    bool out = false;
    const cJSON *item = cJSON_IsArray(v) ? v->child : v;
    for (; item; item = cJSON_IsArray(v) ? item->next : NULL) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        if (!cJSON_IsObject(item) || !cJSON_IsString(id) || !is_http_uri(id->valuestring))
            continue;
        if (!out)
            open_arr(c, key2);
        out = true;
        open_obj(c, NULL);
        put_str(c, "@id", id->valuestring);
        static const char *const copy[] = {"format", "profile"};
        for (size_t i = 0; i < 2; i++) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(item, copy[i]);
            if (cJSON_IsString(f))
                put_str(c, copy[i], f->valuestring);
        }
        /* A 3.0 language map label becomes its first value. */
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(item, "label");
        if (cJSON_IsObject(label) && label->child && cJSON_IsArray(label->child) &&
            cJSON_IsString(label->child->child))
            label = label->child->child;
        if (cJSON_IsString(label))
            put_str(c, "label", label->valuestring);
        close_obj(c);
    }
    if (out)
        close_arr(c);
}

static void put_pair2(struct ctx *c, const struct db_pair *p)
{
    put_value2(c, "label", &p->label, MANIFEST_TEXT_PLAIN, "");
    put_value2(c, "value", &p->value, MANIFEST_TEXT_HTML2, "");
}

static void manifest2(struct ctx *c, const struct db_object *obj)
{
    cJSON *extra = obj->extra_json ? cJSON_Parse(obj->extra_json) : NULL;
    open_obj(c, NULL);
    put_str(c, "@context", "http://iiif.io/api/presentation/2/context.json");
    put_link(c, "@id", c->obj, "/manifest", 0, NULL);
    put_str(c, "@type", "sc:Manifest");
    put_value2(c, "label", &obj->label, MANIFEST_TEXT_PLAIN, obj->id);
    put_value2(c, "description", &obj->summary, MANIFEST_TEXT_HTML2, NULL);
    if (obj->nmetadata) {
        open_arr(c, "metadata");
        for (size_t i = 0; i < obj->nmetadata; i++) {
            open_obj(c, NULL);
            put_pair2(c, &obj->metadata[i]);
            close_obj(c);
        }
        close_arr(c);
    }
    if (obj->has_required_statement)
        put_value2(c, "attribution", &obj->required_statement.value, MANIFEST_TEXT_HTML2, NULL);
    /* 2.1 license is any URI: the stored one, unchanged. */
    if (is_http_uri(obj->rights))
        put_str(c, "license", obj->rights);
    char date[64];
    if (obj->nav_date && normalise_date(obj->nav_date, true, date, sizeof date))
        put_str(c, "navDate", date);
    if (valid_direction(obj->viewing_direction))
        put_str(c, "viewingDirection", obj->viewing_direction);
    /* viewingHint is one value; 2.1 knows individuals, paged and continuous for Manifests. */
    for (size_t i = 0; i < obj->nbehavior; i++) {
        const char *b = obj->behavior[i];
        if (b && (!strcmp(b, "individuals") || !strcmp(b, "paged") || !strcmp(b, "continuous"))) {
            put_str(c, "viewingHint", b);
            break;
        }
    }
    if (extra) {
        extra_links2(c, extra, "homepage", "related");
        extra_links2(c, extra, "seeAlso", "seeAlso");
        extra_links2(c, extra, "rendering", "rendering");
        /* provider[].logo[] (3.0) is logo (2.1): the first one. */
        const cJSON *prov = cJSON_GetObjectItemCaseSensitive(extra, "provider");
        const cJSON *p0 = cJSON_IsArray(prov) ? prov->child : prov;
        const cJSON *logo = cJSON_GetObjectItemCaseSensitive(p0, "logo");
        const cJSON *l0 = cJSON_IsArray(logo) ? logo->child : logo;
        const cJSON *lid = cJSON_GetObjectItemCaseSensitive(l0, "id");
        if (cJSON_IsString(lid) && is_http_uri(lid->valuestring))
            put_str(c, "logo", lid->valuestring);
    }
    const cJSON *xt = extra ? cJSON_GetObjectItemCaseSensitive(extra, "thumbnail") : NULL;
    const cJSON *t0 = cJSON_IsArray(xt) ? xt->child : xt;
    const cJSON *tid = cJSON_GetObjectItemCaseSensitive(t0, "id");
    if (cJSON_IsString(tid) && is_http_uri(tid->valuestring))
        put_str(c, "thumbnail", tid->valuestring);
    else
        thumbnail2(c, obj->canvases[0].image, obj->canvases[0].width, obj->canvases[0].height);
    cJSON_Delete(extra);

    open_arr(c, "sequences");
    open_obj(c, NULL);
    put_link(c, "@id", c->obj, "/sequence/normal", 0, NULL);
    put_str(c, "@type", "sc:Sequence");
    open_arr(c, "canvases");
    for (size_t i = 0; i < obj->ncanvases; i++)
        canvas2(c, obj, i);
    close_arr(c);
    close_obj(c);
    close_arr(c);
    if (obj->nranges) {
        open_arr(c, "structures");
        for (size_t i = 0; i < obj->nranges; i++) {
            char path[32];
            snprintf(path, sizeof path, "%zu", i + 1);
            ranges2(c, obj, &obj->ranges[i], path, 1);
        }
        close_arr(c);
    }
    close_obj(c);
}

char *manifest_presentation2(const struct db_object *obj, const char *base, struct verr *err)
{
    if (check_canvases(obj, err) < 0)
        return NULL;
    struct ctx c;
    ctx_init(&c, base, 2, obj->id, size_hint(obj->ncanvases));
    if (!c.failed)
        manifest2(&c, obj);
    return finish(&c, err, "manifest");
}

/* A 2.1 Collection lists its sub-collections under "collections" and its manifests under
 * "manifests", each list in catalogue order, the kind met first first. */
static void collection_items2(struct ctx *c, const struct db_collection *col, bool collections)
{
    bool open = false;
    for (size_t i = 0; i < col->nitems; i++) {
        const struct db_collection_item *it = &col->items[i];
        if (!it->id || !*it->id || it->is_collection != collections)
            continue;
        if (!open)
            open_arr(c, collections ? "collections" : "manifests");
        open = true;
        open_obj(c, NULL);
        if (it->is_collection) {
            put_collection_url(c, "@id", 2, it->id);
            put_str(c, "@type", "sc:Collection");
        } else {
            put_manifest_url(c, "@id", 2, it->id);
            put_str(c, "@type", "sc:Manifest");
        }
        put_value2(c, "label", &it->label, MANIFEST_TEXT_PLAIN, it->id);
        if (!it->is_collection && it->thumbnail_image)
            thumbnail2(c, it->thumbnail_image, 0, 0);
        close_obj(c);
    }
    if (open)
        close_arr(c);
}

char *manifest_collection2(const struct db_collection *col, const char *base, struct verr *err)
{
    struct ctx c;
    ctx_init(&c, base, 2, NULL, 4096 + col->nitems * 512);
    bool top = !col->name || !*col->name;
    open_obj(&c, NULL);
    put_str(&c, "@context", "http://iiif.io/api/presentation/2/context.json");
    put_collection_url(&c, "@id", 2, col->name);
    put_str(&c, "@type", "sc:Collection");
    put_value2(&c, "label", &col->label, MANIFEST_TEXT_PLAIN,
               top ? "All collections" : col->name);
    bool collections_first = false;
    for (size_t i = 0; i < col->nitems; i++) {
        if (col->items[i].id && *col->items[i].id) {
            collections_first = col->items[i].is_collection;
            break;
        }
    }
    collection_items2(&c, col, collections_first);
    collection_items2(&c, col, !collections_first);
    close_obj(&c);
    return finish(&c, err, "collection");
}
