/* presentation.c: IIIF Presentation API documents from the catalogue's plain structs: Manifest,
 * Canvas and Collection for 3.0 (../shared/iiif/SPECS.md C), Manifest and Collection for 2.1
 * (D). What is emitted also passes the official 3.0 JSON Schema, which is stricter than the
 * spec (G12): no keys outside the schema's list, rights only in its http:// forms. */
#include "manifest.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db.h"

/* Thumbnails: the largest side of a generated thumbnail (a common viewer strip size). */
#define THUMB_PX 200
#define THUMB_BOX "!200,200"
/* Deeper nesting of ranges than this is not a table of contents; deeper levels are dropped. */
#define MAX_RANGE_DEPTH 32

/* ---- a growable string -------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char c)
{
    sb_putn(b, &c, 1);
}

static void sb_vprintf(struct sbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void sb_vprintf(struct sbuf *b, const char *fmt, va_list ap)
{
    char small[256];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) {
        b->oom = true;
    } else if ((size_t)n < sizeof small) {
        sb_putn(b, small, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, again);
            sb_putn(b, big, (size_t)n);
            free(big);
        } else {
            b->oom = true;
        }
    }
    va_end(again);
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

/* The buffer's string (owned by the caller), or NULL if any append ran out of memory. */
static char *sb_take(struct sbuf *b)
{
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p ? b->p : strdup("");
}

/* ---- percent-encoding ----------------------------------------------------------------------- */

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 §2.3: only unreserved characters go unencoded, so an identifier holding '/', '?',
 * '#', '%', spaces or non-ASCII bytes is always one path segment (Image API 3.0 §9 asks the
 * same of clients). */
static void sb_pct(struct sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (is_unreserved(*p)) {
            sb_putc(b, (char)*p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sb_putn(b, e, 3);
        }
    }
}

char *manifest_percent_encode(const char *s)
{
    struct sbuf b = {0};
    sb_pct(&b, s);
    return sb_take(&b);
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

static void put_utf8(struct sbuf *b, uint32_t c)
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
    sb_putn(b, u, n);
}

/* Text or an attribute value, escaped for XML; control characters XML forbids are dropped. */
static void put_escaped(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '&')
            sb_puts(b, "&amp;");
        else if (c == '<')
            sb_puts(b, "&lt;");
        else if (c == '>')
            sb_puts(b, "&gt;");
        else if (c == '"')
            sb_puts(b, "&quot;");
        else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            continue;
        else
            sb_putc(b, (char)c);
    }
}

/* An attribute value with its references resolved (what a browser would use). */
static void decode_value(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t m = s[i] == '&' ? entity(s + i, &cp) : 0;
        if (m && i + m <= n) {
            put_utf8(b, cp);
            i += m;
        } else {
            sb_putc(b, s[i++]);
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
    struct sbuf out;
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
            sb_puts(&h->out, "&amp;");
            return 1;
        }
        if (cp == '&' || cp == '<' || cp == '>' || cp == '"' || cp == '\'')
            sb_putn(&h->out, s, m);
        else
            sb_printf(&h->out, "&#%u;", (unsigned)cp);
        return m;
    }
    if (c == '<')
        sb_puts(&h->out, "&lt;");
    else if (c == '>')
        sb_puts(&h->out, "&gt;");
    else
        sb_putc(&h->out, (char)c);
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
    struct sbuf d = {0};
    decode_value(&d, v, n);
    if (!d.oom && d.p && safe_url(d.p, mailto)) {
        sb_printf(&h->out, " %s=\"", name);
        put_escaped(&h->out, d.p, d.len);
        sb_putc(&h->out, '"');
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
        sb_puts(&h->out, "<br/>");
        return;
    }
    if (!strcmp(t->name, "img")) {
        struct sbuf d = {0};
        if (t->has_src)
            decode_value(&d, t->src, t->src_len);
        bool ok = t->has_src && !d.oom && d.p && safe_url(d.p, false);
        free(d.p);
        if (!ok) /* an image without a usable source shows nothing */
            return;
        html_element_node(h);
        sb_puts(&h->out, "<img");
        put_url_attr(h, "src", t->src, t->src_len, false);
        if (t->has_alt) {
            struct sbuf a = {0};
            decode_value(&a, t->alt, t->alt_len);
            sb_puts(&h->out, " alt=\"");
            if (a.p)
                put_escaped(&h->out, a.p, a.len);
            sb_putc(&h->out, '"');
            if (a.oom)
                h->out.oom = true;
            free(a.p);
        }
        sb_puts(&h->out, "/>");
        return;
    }
    if (!t->self_closing && h->depth == (int)(sizeof h->stack / sizeof h->stack[0]))
        return; /* too deep: the tag is dropped, its content kept */
    html_element_node(h);
    sb_printf(&h->out, "<%s", t->name);
    if (!strcmp(t->name, "a") && t->has_href)
        put_url_attr(h, "href", t->href, t->href_len, true);
    if (t->self_closing) {
        /* "<span/>" is an open tag to an HTML parser: write the pair. */
        sb_printf(&h->out, "></%s>", t->name);
        return;
    }
    sb_putc(&h->out, '>');
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
        sb_printf(&h->out, "</%s>", h->stack[h->depth]);
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
                sb_putc(&h.out, *p++);
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
        sb_printf(&h.out, "</%s>", h.stack[h.depth]);
    }
    /* 3.0 §4.4: HTML is one element, the string starting with '<' and ending with '>'. */
    if (kind == MANIFEST_TEXT_HTML3 && h.out.len && !(h.top_nodes == 1 && h.top_is_element)) {
        struct sbuf w = {0};
        sb_puts(&w, "<span>");
        if (h.out.p)
            sb_putn(&w, h.out.p, h.out.len);
        sb_puts(&w, "</span>");
        if (h.out.oom)
            w.oom = true;
        free(h.out.p);
        return sb_take(&w);
    }
    return sb_take(&h.out);
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

/* Every add goes through these: a failed allocation anywhere marks the document failed (and
 * frees what could not be attached), so the builders read as a list of properties. */
struct ctx {
    const char *base;
    char *obj;       /* {base}/presentation/{v}/{pct(id)} */
    struct sbuf url; /* scratch for one URL at a time */
    bool failed;
};

/* key must be a string literal (or otherwise outlive the document): it is not copied, which
 * saves a third of the allocations of a large manifest. */
static cJSON *put(struct ctx *c, cJSON *parent, const char *key, cJSON *item)
{
    bool ok =
        item && parent &&
        (key ? cJSON_AddItemToObjectCS(parent, key, item) : cJSON_AddItemToArray(parent, item));
    if (!ok) {
        cJSON_Delete(item);
        c->failed = true;
        return NULL;
    }
    return item;
}

static void put_str(struct ctx *c, cJSON *o, const char *key, const char *v)
{
    put(c, o, key, cJSON_CreateString(v));
}

static void put_num(struct ctx *c, cJSON *o, const char *key, double v)
{
    put(c, o, key, cJSON_CreateNumber(v));
}

static cJSON *put_obj(struct ctx *c, cJSON *o, const char *key)
{
    return put(c, o, key, cJSON_CreateObject());
}

static cJSON *put_arr(struct ctx *c, cJSON *o, const char *key)
{
    return put(c, o, key, cJSON_CreateArray());
}

/* A URL in the scratch buffer, valid until the next call. */
static const char *url(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *url(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->url.len = 0;
    sb_vprintf(&c->url, fmt, ap);
    va_end(ap);
    if (c->url.oom || !c->url.p) {
        c->failed = true;
        return "";
    }
    return c->url.p;
}

/* {base}/{api}/{v}/{pct(s)}, malloc'd. */
static char *encoded(struct ctx *c, const char *api, int v, const char *s)
{
    struct sbuf b = {0};
    sb_printf(&b, "%s/%s/%d/", c->base, api, v);
    sb_pct(&b, s);
    char *r = sb_take(&b);
    if (!r)
        c->failed = true;
    return r;
}

static void ctx_init(struct ctx *c, const char *base, int version, const char *id)
{
    memset(c, 0, sizeof *c);
    c->base = base;
    if (id)
        c->obj = encoded(c, "presentation", version, id);
}

static void ctx_clear(struct ctx *c)
{
    free(c->obj);
    free(c->url.p);
}

/* cJSON_Delete(doc) and the text, or NULL with err when anything failed. */
static char *finish(struct ctx *c, cJSON *doc, struct verr *err, const char *what)
{
    char *text = NULL;
    if (doc && !c->failed)
        text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    ctx_clear(c);
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

/* A 3.0 language map: {"en": ["..."], "none": ["..."]}; values kept in order per language.
 * fallback (may be NULL) is used, untagged, when the map is empty. */
static cJSON *lang_map(struct ctx *c, const struct db_lang_map *m, enum manifest_text kind,
                       const char *fallback)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        c->failed = true;
        return NULL;
    }
    size_t used = 0;
    for (size_t i = 0; m && i < m->n; i++) {
        if (!m->items[i].value)
            continue;
        char kb[64];
        const char *key = lang_key(m->items[i].lang, kb, sizeof kb);
        cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, key);
        if (!arr) {
            /* a computed key: copied, unlike put()'s literals */
            arr = cJSON_CreateArray();
            if (!arr || !cJSON_AddItemToObject(o, key, arr)) {
                cJSON_Delete(arr);
                c->failed = true;
                continue;
            }
        }
        char *v = manifest_text(m->items[i].value, kind);
        if (!v)
            c->failed = true;
        else
            put(c, arr, NULL, cJSON_CreateString(v));
        free(v);
        used++;
    }
    if (!used && fallback) {
        cJSON *arr = put_arr(c, o, "none");
        char *v = manifest_text(fallback, MANIFEST_TEXT_PLAIN);
        if (!v)
            c->failed = true;
        else
            put(c, arr, NULL, cJSON_CreateString(v));
        free(v);
    }
    return o;
}

static bool map_empty(const struct db_lang_map *m)
{
    for (size_t i = 0; m && i < m->n; i++)
        if (m->items[i].value)
            return false;
    return true;
}

static void put_map(struct ctx *c, cJSON *o, const char *key, const struct db_lang_map *m,
                    enum manifest_text kind, const char *fallback)
{
    if (map_empty(m) && !fallback)
        return;
    put(c, o, key, lang_map(c, m, kind, fallback));
}

/* A 2.1 value: a string, {"@value", "@language"}, or an array of them (D); NULL when empty. */
static cJSON *value2(struct ctx *c, const struct db_lang_map *m, enum manifest_text kind,
                     const char *fallback)
{
    size_t n = 0;
    for (size_t i = 0; m && i < m->n; i++)
        n += m->items[i].value != NULL;
    if (!n) {
        if (!fallback)
            return NULL;
        char *v = manifest_text(fallback, MANIFEST_TEXT_PLAIN);
        cJSON *s = v ? cJSON_CreateString(v) : NULL;
        free(v);
        if (!s)
            c->failed = true;
        return s;
    }
    cJSON *arr = n > 1 ? cJSON_CreateArray() : NULL;
    if (n > 1 && !arr) {
        c->failed = true;
        return NULL;
    }
    cJSON *one = NULL;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->items[i].value)
            continue;
        char kb[64];
        const char *key = lang_key(m->items[i].lang, kb, sizeof kb);
        char *v = manifest_text(m->items[i].value, kind);
        cJSON *item;
        if (!strcmp(key, "none")) {
            item = v ? cJSON_CreateString(v) : NULL;
        } else {
            item = cJSON_CreateObject();
            put_str(c, item, "@value", v ? v : "");
            put_str(c, item, "@language", key);
        }
        free(v);
        if (!item || !v) {
            cJSON_Delete(item);
            c->failed = true;
            continue;
        }
        if (arr)
            put(c, arr, NULL, item);
        else
            one = item;
    }
    return arr ? arr : one;
}

static void put_value2(struct ctx *c, cJSON *o, const char *key, const struct db_lang_map *m,
                       enum manifest_text kind, const char *fallback)
{
    cJSON *v = value2(c, m, kind, fallback);
    if (v)
        put(c, o, key, v);
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

static cJSON *service3(struct ctx *c, const char *image_base)
{
    cJSON *s = cJSON_CreateObject();
    put_str(c, s, "id", image_base);
    put_str(c, s, "type", "ImageService3");
    put_str(c, s, "profile", "level2");
    return s;
}

/* SPECS C5: the same image is also served by Image API 2.1; older clients look for it. */
static cJSON *service2_in3(struct ctx *c, const char *image_base2)
{
    cJSON *s = cJSON_CreateObject();
    put_str(c, s, "@id", image_base2);
    put_str(c, s, "@type", "ImageService2");
    put_str(c, s, "profile", "http://iiif.io/api/image/2/level2.json");
    return s;
}

/* A 3.0 thumbnail list with one image: a planned size when the image size is known, else a
 * "!200,200" request (which the server always answers within the image). */
static cJSON *thumbnail3(struct ctx *c, const char *image, uint32_t w, uint32_t h)
{
    char *ib = encoded(c, "iiif", 3, image);
    cJSON *arr = cJSON_CreateArray();
    cJSON *t = put(c, arr, NULL, cJSON_CreateObject());
    char path[256];
    uint32_t tw = 0, th = 0;
    bool sized = w && h && thumb_plan(3, w, h, path, sizeof path, &tw, &th);
    if (!sized)
        snprintf(path, sizeof path, "full/%s/0/default.jpg", THUMB_BOX);
    put_str(c, t, "id", ib ? url(c, "%s/%s", ib, path) : "");
    put_str(c, t, "type", "Image");
    put_str(c, t, "format", "image/jpeg");
    if (sized) {
        put_num(c, t, "width", tw);
        put_num(c, t, "height", th);
    }
    cJSON *svc = put_arr(c, t, "service");
    put(c, svc, NULL, service3(c, ib ? ib : ""));
    free(ib);
    return arr;
}

/* ---- 3.0 ----------------------------------------------------------------------------------- */

static cJSON *canvas3(struct ctx *c, const struct db_object *obj, size_t i, bool top)
{
    const struct db_canvas *cv = &obj->canvases[i];
    size_t n = i + 1;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        c->failed = true;
        return NULL;
    }
    if (top)
        put_str(c, o, "@context", "http://iiif.io/api/presentation/3/context.json");
    put_str(c, o, "id", url(c, "%s/canvas/%zu", c->obj, n));
    put_str(c, o, "type", "Canvas");
    put_map(c, o, "label", &cv->label, MANIFEST_TEXT_PLAIN, NULL);
    put_num(c, o, "width", cv->width);
    put_num(c, o, "height", cv->height);
    if (cv->image)
        put(c, o, "thumbnail", thumbnail3(c, cv->image, cv->width, cv->height));
    if (top) {
        /* A Canvas fetched on its own says which Manifest it belongs to (3.0 §3.3.4 partOf). */
        cJSON *part = put(c, put_arr(c, o, "partOf"), NULL, cJSON_CreateObject());
        put_str(c, part, "id", url(c, "%s/manifest", c->obj));
        put_str(c, part, "type", "Manifest");
    }
    cJSON *page = put(c, put_arr(c, o, "items"), NULL, cJSON_CreateObject());
    put_str(c, page, "id", url(c, "%s/canvas/%zu/page", c->obj, n));
    put_str(c, page, "type", "AnnotationPage");
    cJSON *anno = put(c, put_arr(c, page, "items"), NULL, cJSON_CreateObject());
    put_str(c, anno, "id", url(c, "%s/canvas/%zu/annotation", c->obj, n));
    put_str(c, anno, "type", "Annotation");
    put_str(c, anno, "motivation", "painting");
    cJSON *body = put_obj(c, anno, "body");
    char *ib = encoded(c, "iiif", 3, cv->image ? cv->image : "");
    char *ib2 = encoded(c, "iiif", 2, cv->image ? cv->image : "");
    put_str(c, body, "id", ib ? url(c, "%s/full/max/0/default.jpg", ib) : "");
    put_str(c, body, "type", "Image");
    put_str(c, body, "format", "image/jpeg");
    put_num(c, body, "width", cv->width);
    put_num(c, body, "height", cv->height);
    cJSON *svc = put_arr(c, body, "service");
    put(c, svc, NULL, service3(c, ib ? ib : ""));
    put(c, svc, NULL, service2_in3(c, ib2 ? ib2 : ""));
    free(ib);
    free(ib2);
    put_str(c, anno, "target", url(c, "%s/canvas/%zu", c->obj, n));
    return o;
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
static cJSON *range3(struct ctx *c, const struct db_object *obj, const struct db_range *r,
                     const char *path, int depth)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        c->failed = true;
        return NULL;
    }
    put_str(c, o, "id", url(c, "%s/range/%s", c->obj, path));
    put_str(c, o, "type", "Range");
    put_map(c, o, "label", &r->label, MANIFEST_TEXT_PLAIN, NULL);
    cJSON *items = put_arr(c, o, "items");
    size_t ci = 0, ri = 0;
    size_t nr = depth < MAX_RANGE_DEPTH ? r->nranges : 0;
    while (ci < r->ncanvases || ri < nr) {
        bool take_canvas =
            ci < r->ncanvases &&
            (ri >= nr || r->canvases[ci] <= range_first(&r->ranges[ri], obj->ncanvases, depth + 1));
        if (take_canvas) {
            size_t k = r->canvases[ci++];
            if (k >= obj->ncanvases)
                continue;
            cJSON *ref = put(c, items, NULL, cJSON_CreateObject());
            put_str(c, ref, "id", url(c, "%s/canvas/%zu", c->obj, k + 1));
            put_str(c, ref, "type", "Canvas");
        } else {
            char sub[512];
            int n = snprintf(sub, sizeof sub, "%s.%zu", path, ri + 1);
            if (n < 0 || (size_t)n >= sizeof sub) {
                c->failed = true;
                break;
            }
            put(c, items, NULL, range3(c, obj, &r->ranges[ri++], sub, depth + 1));
        }
    }
    return o;
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
        cJSON *d = put(c, out, NULL, cJSON_Duplicate(item, true));
        if (!d)
            break;
        cJSON_DeleteItemFromObjectCaseSensitive(d, "@context");
        cJSON *label = cJSON_GetObjectItemCaseSensitive(d, "label");
        if (cJSON_IsString(label)) {
            cJSON *map = cJSON_CreateObject();
            cJSON *arr = put_arr(c, map, "none");
            put_str(c, arr, NULL, label->valuestring);
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

static void put_pair3(struct ctx *c, cJSON *o, const struct db_pair *p)
{
    put(c, o, "label", lang_map(c, &p->label, MANIFEST_TEXT_PLAIN, NULL));
    put(c, o, "value", lang_map(c, &p->value, MANIFEST_TEXT_HTML3, NULL));
}

static cJSON *manifest3(struct ctx *c, const struct db_object *obj)
{
    cJSON *m = cJSON_CreateObject();
    if (!m) {
        c->failed = true;
        return NULL;
    }
    cJSON *extra = obj->extra_json ? cJSON_Parse(obj->extra_json) : NULL;
    put_str(c, m, "@context", "http://iiif.io/api/presentation/3/context.json");
    put_str(c, m, "id", url(c, "%s/manifest", c->obj));
    put_str(c, m, "type", "Manifest");
    /* label is required: an object without one is named by its identifier. */
    put_map(c, m, "label", &obj->label, MANIFEST_TEXT_PLAIN, obj->id);
    put_map(c, m, "summary", &obj->summary, MANIFEST_TEXT_HTML3, NULL);

    char rights[1024];
    bool rights_ok = obj->rights && normalise_rights(obj->rights, rights, sizeof rights);
    bool rights_in_metadata = obj->rights && *obj->rights && !rights_ok;
    if (obj->nmetadata || rights_in_metadata) {
        cJSON *md = put_arr(c, m, "metadata");
        for (size_t i = 0; i < obj->nmetadata; i++)
            put_pair3(c, put(c, md, NULL, cJSON_CreateObject()), &obj->metadata[i]);
        if (rights_in_metadata) {
            /* 3.0 §3.2.1 rights allows only CC, RightsStatements.org or registered extension
             * URIs; any other statement is still shown to people, as metadata. */
            cJSON *pair = put(c, md, NULL, cJSON_CreateObject());
            cJSON *l = put_arr(c, put_obj(c, pair, "label"), "en");
            put_str(c, l, NULL, "Rights");
            char *v = manifest_text(obj->rights, MANIFEST_TEXT_HTML3);
            cJSON *vals = put_arr(c, put_obj(c, pair, "value"), "none");
            put_str(c, vals, NULL, v ? v : "");
            if (!v)
                c->failed = true;
            free(v);
        }
    }
    if (obj->has_required_statement)
        put_pair3(c, put_obj(c, m, "requiredStatement"), &obj->required_statement);
    if (rights_ok)
        put_str(c, m, "rights", rights);
    char date[64];
    if (obj->nav_date && normalise_date(obj->nav_date, false, date, sizeof date))
        put_str(c, m, "navDate", date);
    if (valid_direction(obj->viewing_direction))
        put_str(c, m, "viewingDirection", obj->viewing_direction);
    cJSON *beh = NULL;
    for (size_t i = 0; i < obj->nbehavior; i++) {
        if (!manifest_behavior(obj->behavior[i]))
            continue;
        if (!beh)
            beh = put_arr(c, m, "behavior");
        put_str(c, beh, NULL, obj->behavior[i]);
    }
    static const char *const links[] = {"provider", "homepage", "seeAlso", "rendering"};
    for (size_t i = 0; extra && i < sizeof links / sizeof links[0]; i++) {
        cJSON *l = extra_links(c, extra, links[i]);
        if (l)
            put(c, m, links[i], l);
    }
    cJSON *thumb = extra ? extra_links(c, extra, "thumbnail") : NULL;
    if (thumb)
        put(c, m, "thumbnail", thumb);
    else if (obj->ncanvases && obj->canvases[0].image)
        put(c, m, "thumbnail",
            thumbnail3(c, obj->canvases[0].image, obj->canvases[0].width, obj->canvases[0].height));
    cJSON_Delete(extra);

    cJSON *items = put_arr(c, m, "items");
    for (size_t i = 0; i < obj->ncanvases; i++)
        put(c, items, NULL, canvas3(c, obj, i, false));
    if (obj->nranges) {
        cJSON *st = put_arr(c, m, "structures");
        for (size_t i = 0; i < obj->nranges; i++) {
            char path[32];
            snprintf(path, sizeof path, "%zu", i + 1);
            put(c, st, NULL, range3(c, obj, &obj->ranges[i], path, 1));
        }
    }
    return m;
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

char *manifest_presentation3(const struct db_object *obj, const char *base, struct verr *err)
{
    if (check_canvases(obj, err) < 0)
        return NULL;
    struct ctx c;
    ctx_init(&c, base, 3, obj->id);
    cJSON *doc = c.obj ? manifest3(&c, obj) : NULL;
    return finish(&c, doc, err, "manifest");
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
    ctx_init(&c, base, 3, obj->id);
    cJSON *doc = c.obj ? canvas3(&c, obj, index, true) : NULL;
    return finish(&c, doc, err, "canvas");
}

/* Collections live at {base}/presentation/{v}/collection/{pct(name)}; the top level (name "")
 * at {base}/presentation/{v}/collection, so no collection name is taken by it. */
static char *collection_url(struct ctx *c, int version, const char *name)
{
    struct sbuf b = {0};
    sb_printf(&b, "%s/presentation/%d/collection", c->base, version);
    if (name && *name) {
        sb_putc(&b, '/');
        sb_pct(&b, name);
    }
    char *r = sb_take(&b);
    if (!r)
        c->failed = true;
    return r;
}

char *manifest_collection3(const struct db_collection *col, const char *base, struct verr *err)
{
    struct ctx c;
    ctx_init(&c, base, 3, NULL);
    cJSON *d = cJSON_CreateObject();
    char *self = collection_url(&c, 3, col->name);
    put_str(&c, d, "@context", "http://iiif.io/api/presentation/3/context.json");
    put_str(&c, d, "id", self ? self : "");
    put_str(&c, d, "type", "Collection");
    bool top = !col->name || !*col->name;
    put_map(&c, d, "label", &col->label, MANIFEST_TEXT_PLAIN, top ? "All collections" : col->name);
    cJSON *items = put_arr(&c, d, "items");
    for (size_t i = 0; i < col->nitems; i++) {
        const struct db_collection_item *it = &col->items[i];
        if (!it->id || !*it->id)
            continue;
        cJSON *ref = put(&c, items, NULL, cJSON_CreateObject());
        if (it->is_collection) {
            char *u = collection_url(&c, 3, it->id);
            put_str(&c, ref, "id", u ? u : "");
            free(u);
            put_str(&c, ref, "type", "Collection");
        } else {
            char *m = encoded(&c, "presentation", 3, it->id);
            put_str(&c, ref, "id", m ? url(&c, "%s/manifest", m) : "");
            free(m);
            put_str(&c, ref, "type", "Manifest");
        }
        /* Referenced Collections and Manifests MUST have a label (C1). */
        put_map(&c, ref, "label", &it->label, MANIFEST_TEXT_PLAIN, it->id);
        if (!it->is_collection && it->thumbnail_image)
            put(&c, ref, "thumbnail", thumbnail3(&c, it->thumbnail_image, 0, 0));
    }
    free(self);
    return finish(&c, d, err, "collection");
}

/* ---- 2.1 ----------------------------------------------------------------------------------- */

static cJSON *service2(struct ctx *c, const char *image_base2)
{
    cJSON *s = cJSON_CreateObject();
    /* D: an embedded image service carries its own @context (REQUIRED). */
    put_str(c, s, "@context", "http://iiif.io/api/image/2/context.json");
    put_str(c, s, "@id", image_base2);
    put_str(c, s, "profile", "http://iiif.io/api/image/2/level2.json");
    return s;
}

static cJSON *thumbnail2(struct ctx *c, const char *image, uint32_t w, uint32_t h)
{
    char *ib = encoded(c, "iiif", 2, image);
    cJSON *t = cJSON_CreateObject();
    char path[256];
    uint32_t tw, th;
    bool sized = thumb_plan(2, w, h, path, sizeof path, &tw, &th);
    if (!sized)
        snprintf(path, sizeof path, "full/%s/0/default.jpg", THUMB_BOX);
    put_str(c, t, "@id", ib ? url(c, "%s/%s", ib, path) : "");
    put_str(c, t, "@type", "dctypes:Image");
    put_str(c, t, "format", "image/jpeg");
    if (sized) {
        put_num(c, t, "width", tw);
        put_num(c, t, "height", th);
    }
    put(c, t, "service", service2(c, ib ? ib : ""));
    free(ib);
    return t;
}

static cJSON *canvas2(struct ctx *c, const struct db_object *obj, size_t i)
{
    const struct db_canvas *cv = &obj->canvases[i];
    size_t n = i + 1;
    char num[32];
    snprintf(num, sizeof num, "%zu", n);
    cJSON *o = cJSON_CreateObject();
    put_str(c, o, "@id", url(c, "%s/canvas/%zu", c->obj, n));
    put_str(c, o, "@type", "sc:Canvas");
    /* 2.1 requires a Canvas label: the page number when the catalogue has none. */
    put_value2(c, o, "label", &cv->label, MANIFEST_TEXT_PLAIN, num);
    put_num(c, o, "width", cv->width);
    put_num(c, o, "height", cv->height);
    put(c, o, "thumbnail", thumbnail2(c, cv->image, cv->width, cv->height));
    cJSON *anno = put(c, put_arr(c, o, "images"), NULL, cJSON_CreateObject());
    put_str(c, anno, "@id", url(c, "%s/annotation/%zu", c->obj, n));
    put_str(c, anno, "@type", "oa:Annotation");
    put_str(c, anno, "motivation", "sc:painting");
    cJSON *res = put_obj(c, anno, "resource");
    char *ib = encoded(c, "iiif", 2, cv->image);
    put_str(c, res, "@id", ib ? url(c, "%s/full/full/0/default.jpg", ib) : "");
    put_str(c, res, "@type", "dctypes:Image");
    put_str(c, res, "format", "image/jpeg");
    put_num(c, res, "width", cv->width);
    put_num(c, res, "height", cv->height);
    put(c, res, "service", service2(c, ib ? ib : ""));
    free(ib);
    put_str(c, anno, "on", url(c, "%s/canvas/%zu", c->obj, n));
    return o;
}

/* 2.1 structures are one flat list of every Range (pre-order), children named by @id in
 * "ranges" and pages in "canvases"; roots carry viewingHint "top" (D). Same ids as 3.0. */
static void ranges2(struct ctx *c, cJSON *list, const struct db_object *obj,
                    const struct db_range *r, const char *path, int depth)
{
    cJSON *o = put(c, list, NULL, cJSON_CreateObject());
    put_str(c, o, "@id", url(c, "%s/range/%s", c->obj, path));
    put_str(c, o, "@type", "sc:Range");
    char fallback[600];
    snprintf(fallback, sizeof fallback, "Section %s", path);
    put_value2(c, o, "label", &r->label, MANIFEST_TEXT_PLAIN, fallback);
    if (depth == 1)
        put_str(c, o, "viewingHint", "top");
    cJSON *cvs = NULL;
    for (size_t i = 0; i < r->ncanvases; i++) {
        if (r->canvases[i] >= obj->ncanvases)
            continue;
        if (!cvs)
            cvs = put_arr(c, o, "canvases");
        put_str(c, cvs, NULL, url(c, "%s/canvas/%zu", c->obj, r->canvases[i] + 1));
    }
    size_t nr = depth < MAX_RANGE_DEPTH ? r->nranges : 0;
    if (!nr)
        return;
    cJSON *sub = put_arr(c, o, "ranges");
    for (size_t i = 0; i < nr; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s.%zu", path, i + 1);
        put_str(c, sub, NULL, url(c, "%s/range/%s", c->obj, p));
    }
    for (size_t i = 0; i < nr; i++) {
        char p[512];
        int n = snprintf(p, sizeof p, "%s.%zu", path, i + 1);
        if (n < 0 || (size_t)n >= sizeof p) {
            c->failed = true;
            return;
        }
        ranges2(c, list, obj, &r->ranges[i], p, depth + 1);
    }
}

/* extra_json links in 2.1 form: {"@id", "format", "label", "profile"} (homepage is "related"). */
static void extra_links2(struct ctx *c, cJSON *m, const cJSON *extra, const char *key,
                         const char *key2)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(extra, key);
    if (!v || !(cJSON_IsArray(v) || cJSON_IsObject(v)))
        return;
    cJSON *out = NULL;
    const cJSON *item = cJSON_IsArray(v) ? v->child : v;
    for (; item; item = cJSON_IsArray(v) ? item->next : NULL) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        if (!cJSON_IsObject(item) || !cJSON_IsString(id) || !is_http_uri(id->valuestring))
            continue;
        if (!out)
            out = put_arr(c, m, key2);
        cJSON *o = put(c, out, NULL, cJSON_CreateObject());
        put_str(c, o, "@id", id->valuestring);
        static const char *const copy[] = {"format", "profile"};
        for (size_t i = 0; i < 2; i++) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(item, copy[i]);
            if (cJSON_IsString(f))
                put_str(c, o, copy[i], f->valuestring);
        }
        /* A 3.0 language map label becomes its first value. */
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(item, "label");
        if (cJSON_IsObject(label) && label->child && cJSON_IsArray(label->child) &&
            cJSON_IsString(label->child->child))
            label = label->child->child;
        if (cJSON_IsString(label))
            put_str(c, o, "label", label->valuestring);
    }
}

static void put_pair2(struct ctx *c, cJSON *o, const struct db_pair *p)
{
    put_value2(c, o, "label", &p->label, MANIFEST_TEXT_PLAIN, "");
    put_value2(c, o, "value", &p->value, MANIFEST_TEXT_HTML2, "");
}

static cJSON *manifest2(struct ctx *c, const struct db_object *obj)
{
    cJSON *m = cJSON_CreateObject();
    if (!m) {
        c->failed = true;
        return NULL;
    }
    cJSON *extra = obj->extra_json ? cJSON_Parse(obj->extra_json) : NULL;
    put_str(c, m, "@context", "http://iiif.io/api/presentation/2/context.json");
    put_str(c, m, "@id", url(c, "%s/manifest", c->obj));
    put_str(c, m, "@type", "sc:Manifest");
    put_value2(c, m, "label", &obj->label, MANIFEST_TEXT_PLAIN, obj->id);
    put_value2(c, m, "description", &obj->summary, MANIFEST_TEXT_HTML2, NULL);
    if (obj->nmetadata) {
        cJSON *md = put_arr(c, m, "metadata");
        for (size_t i = 0; i < obj->nmetadata; i++)
            put_pair2(c, put(c, md, NULL, cJSON_CreateObject()), &obj->metadata[i]);
    }
    if (obj->has_required_statement)
        put_value2(c, m, "attribution", &obj->required_statement.value, MANIFEST_TEXT_HTML2, NULL);
    /* 2.1 license is any URI: the stored one, unchanged. */
    if (is_http_uri(obj->rights))
        put_str(c, m, "license", obj->rights);
    char date[64];
    if (obj->nav_date && normalise_date(obj->nav_date, true, date, sizeof date))
        put_str(c, m, "navDate", date);
    if (valid_direction(obj->viewing_direction))
        put_str(c, m, "viewingDirection", obj->viewing_direction);
    /* viewingHint is one value; 2.1 knows individuals, paged and continuous for Manifests. */
    for (size_t i = 0; i < obj->nbehavior; i++) {
        const char *b = obj->behavior[i];
        if (b && (!strcmp(b, "individuals") || !strcmp(b, "paged") || !strcmp(b, "continuous"))) {
            put_str(c, m, "viewingHint", b);
            break;
        }
    }
    if (extra) {
        extra_links2(c, m, extra, "homepage", "related");
        extra_links2(c, m, extra, "seeAlso", "seeAlso");
        extra_links2(c, m, extra, "rendering", "rendering");
        /* provider[].logo[] (3.0) is logo (2.1): the first one. */
        const cJSON *prov = cJSON_GetObjectItemCaseSensitive(extra, "provider");
        const cJSON *p0 = cJSON_IsArray(prov) ? prov->child : prov;
        const cJSON *logo = cJSON_GetObjectItemCaseSensitive(p0, "logo");
        const cJSON *l0 = cJSON_IsArray(logo) ? logo->child : logo;
        const cJSON *lid = cJSON_GetObjectItemCaseSensitive(l0, "id");
        if (cJSON_IsString(lid) && is_http_uri(lid->valuestring))
            put_str(c, m, "logo", lid->valuestring);
    }
    const cJSON *xt = extra ? cJSON_GetObjectItemCaseSensitive(extra, "thumbnail") : NULL;
    const cJSON *t0 = cJSON_IsArray(xt) ? xt->child : xt;
    const cJSON *tid = cJSON_GetObjectItemCaseSensitive(t0, "id");
    if (cJSON_IsString(tid) && is_http_uri(tid->valuestring))
        put_str(c, m, "thumbnail", tid->valuestring);
    else
        put(c, m, "thumbnail",
            thumbnail2(c, obj->canvases[0].image, obj->canvases[0].width, obj->canvases[0].height));
    cJSON_Delete(extra);

    cJSON *seq = put(c, put_arr(c, m, "sequences"), NULL, cJSON_CreateObject());
    put_str(c, seq, "@id", url(c, "%s/sequence/normal", c->obj));
    put_str(c, seq, "@type", "sc:Sequence");
    cJSON *cvs = put_arr(c, seq, "canvases");
    for (size_t i = 0; i < obj->ncanvases; i++)
        put(c, cvs, NULL, canvas2(c, obj, i));
    if (obj->nranges) {
        cJSON *st = put_arr(c, m, "structures");
        for (size_t i = 0; i < obj->nranges; i++) {
            char path[32];
            snprintf(path, sizeof path, "%zu", i + 1);
            ranges2(c, st, obj, &obj->ranges[i], path, 1);
        }
    }
    return m;
}

char *manifest_presentation2(const struct db_object *obj, const char *base, struct verr *err)
{
    if (check_canvases(obj, err) < 0)
        return NULL;
    struct ctx c;
    ctx_init(&c, base, 2, obj->id);
    cJSON *doc = c.obj ? manifest2(&c, obj) : NULL;
    return finish(&c, doc, err, "manifest");
}

char *manifest_collection2(const struct db_collection *col, const char *base, struct verr *err)
{
    struct ctx c;
    ctx_init(&c, base, 2, NULL);
    cJSON *d = cJSON_CreateObject();
    char *self = collection_url(&c, 2, col->name);
    bool top = !col->name || !*col->name;
    put_str(&c, d, "@context", "http://iiif.io/api/presentation/2/context.json");
    put_str(&c, d, "@id", self ? self : "");
    put_str(&c, d, "@type", "sc:Collection");
    put_value2(&c, d, "label", &col->label, MANIFEST_TEXT_PLAIN,
               top ? "All collections" : col->name);
    cJSON *cols = NULL, *mans = NULL;
    for (size_t i = 0; i < col->nitems; i++) {
        const struct db_collection_item *it = &col->items[i];
        if (!it->id || !*it->id)
            continue;
        cJSON *ref;
        if (it->is_collection) {
            if (!cols)
                cols = put_arr(&c, d, "collections");
            ref = put(&c, cols, NULL, cJSON_CreateObject());
            char *u = collection_url(&c, 2, it->id);
            put_str(&c, ref, "@id", u ? u : "");
            free(u);
            put_str(&c, ref, "@type", "sc:Collection");
        } else {
            if (!mans)
                mans = put_arr(&c, d, "manifests");
            ref = put(&c, mans, NULL, cJSON_CreateObject());
            char *m = encoded(&c, "presentation", 2, it->id);
            put_str(&c, ref, "@id", m ? url(&c, "%s/manifest", m) : "");
            free(m);
            put_str(&c, ref, "@type", "sc:Manifest");
        }
        put_value2(&c, ref, "label", &it->label, MANIFEST_TEXT_PLAIN, it->id);
        if (!it->is_collection && it->thumbnail_image)
            put(&c, ref, "thumbnail", thumbnail2(&c, it->thumbnail_image, 0, 0));
    }
    free(self);
    return finish(&c, d, err, "collection");
}
