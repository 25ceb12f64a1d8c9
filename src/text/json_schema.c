/* json_schema.c: the JSON-schema automaton of json_schema.h: compiling a schema into nodes, feeding
 * bytes to a state, and the fewest bytes that finish a document. */
#include "text/json_schema.h"

#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { JS_ANY,
               JS_OBJECT,
               JS_ARRAY,
               JS_STRING,
               JS_INTEGER,
               JS_NUMBER,
               JS_LITERALS,
               JS_UNION } js_kind;

struct js_node {
    js_kind kind;
    int min_len; /* bytes of the shortest value */
    /* JS_OBJECT: n_props == 0 is an object of any keys and values */
    int n_props;
    char **keys; /* each key as JSON text, quotes included */
    int *key_len;
    js_node **props;
    unsigned char *required;
    /* JS_ARRAY */
    js_node *items;
    int min_items, max_items; /* max_items < 0: no limit */
    /* JS_INTEGER, JS_NUMBER: bounds the automaton keeps to (see compile_bounds) */
    int nonneg;      /* no minus sign (minimum 0) */
    int no_exponent; /* numbers with bounds: no exponent, so the 15 integer digits bound them */
    /* JS_STRING: characters (code points or escapes) */
    int min_chars, max_chars; /* max_chars < 0: no limit */
    /* JS_LITERALS: enum and const values, booleans and null, as JSON text */
    int n_lit;
    char **lit;
    int *lit_len;
    /* JS_UNION: alternatives that differ in their first byte */
    int n_alt;
    js_node **alt;
};

/* Frames and their sub-states. */
enum { F_VALUE,
       F_OBJECT,
       F_ARRAY,
       F_STRING,
       F_KEYSTR,
       F_NUMBER,
       F_LITERAL };
enum { O_START,
       O_KEY,
       O_FREEKEY,
       O_COLON,
       O_VALUE,
       O_AFTER,
       O_NEXT };
enum { A_START,
       A_VALUE,
       A_AFTER,
       A_NEXT };
enum { S_CHARS,
       S_ESC,
       S_HEX,
       S_UTF8 };
enum { N_MINUS,
       N_ZERO,
       N_INT,
       N_DOT,
       N_FRAC,
       N_E,
       N_ESIGN,
       N_EXP };
#define AGAIN 1 /* the frame is complete and the byte belongs to its parent */
#define MAX_INT_DIGITS 15
#define MAX_FRAC_DIGITS 15
#define MAX_EXP_DIGITS 2 /* 1e99 at most: no parser turns it into infinity */

/* ---------------------------------------------------------------------------------------------
 * Compiling */

typedef struct {
    sasp_json_schema *s;
    json_t *root;
    const char *refs[JS_MAX_DEPTH]; /* the $refs being resolved, to refuse recursion */
    int n_refs;
    char *err;
    size_t errlen;
} cctx;

/* The nodes a value of any type (JS_ANY) becomes, by its first byte: shared and never freed. */
static char *any_lit_text[] = {(char *)"true", (char *)"false", (char *)"null"};
static int any_lit_len[] = {4, 5, 4};
static js_node ANY_VALUE = {.kind = JS_ANY, .min_len = 1, .max_items = -1, .max_chars = -1};
static js_node ANY_OBJECT = {.kind = JS_OBJECT, .min_len = 2, .max_items = -1, .max_chars = -1};
static js_node ANY_ARRAY = {.kind = JS_ARRAY, .min_len = 2, .items = &ANY_VALUE, .max_items = -1, .max_chars = -1};
static js_node ANY_STRING = {.kind = JS_STRING, .min_len = 2, .max_items = -1, .max_chars = -1};
static js_node ANY_NUMBER = {.kind = JS_NUMBER, .min_len = 1, .max_items = -1, .max_chars = -1};
static js_node ANY_LITERAL = {.kind = JS_LITERALS, .min_len = 4, .n_lit = 3, .lit = any_lit_text, .lit_len = any_lit_len, .max_items = -1, .max_chars = -1};

static int compile_error(cctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int compile_error(cctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static js_node *new_node(cctx *c, js_kind kind)
{
    sasp_json_schema *s = c->s;
    if (s->n_all == s->cap_all) {
        int cap = s->cap_all ? 2 * s->cap_all : 16;
        js_node **a = realloc(s->all, (size_t)cap * sizeof *a);
        if (!a) return NULL;
        s->all = a;
        s->cap_all = cap;
    }
    js_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->max_items = n->max_chars = -1;
    s->all[s->n_all++] = n;
    return n;
}

/* A JS_LITERALS node of the given JSON texts. */
static js_node *literals(cctx *c, const char *const *texts, int n)
{
    js_node *node = new_node(c, JS_LITERALS);
    if (!node) return NULL;
    node->lit = calloc((size_t)n, sizeof *node->lit);
    node->lit_len = calloc((size_t)n, sizeof *node->lit_len);
    if (!node->lit || !node->lit_len) return NULL;
    node->n_lit = n;
    node->min_len = 1 << 30;
    for (int i = 0; i < n; i++) {
        if (!(node->lit[i] = strdup(texts[i]))) return NULL;
        node->lit_len[i] = (int)strlen(texts[i]);
        if (node->lit_len[i] < node->min_len) node->min_len = node->lit_len[i];
    }
    return node;
}

/* The bytes a value of node can start with. */
static void first_bytes(const js_node *n, unsigned char set[256])
{
    switch (n->kind) {
    case JS_ANY:
        for (int b = 0; b < 256; b++)
            set[b] |= b == '{' || b == '[' || b == '"' || b == '-' || (b >= '0' && b <= '9') || b == 't' || b == 'f' || b == 'n';
        break;
    case JS_OBJECT: set['{'] = 1; break;
    case JS_ARRAY: set['['] = 1; break;
    case JS_STRING: set['"'] = 1; break;
    case JS_INTEGER:
    case JS_NUMBER:
        set['-'] = !n->nonneg;
        for (int b = '0'; b <= '9'; b++) set[b] = 1;
        break;
    case JS_LITERALS:
        for (int i = 0; i < n->n_lit; i++) set[(unsigned char)n->lit[i][0]] = 1;
        break;
    case JS_UNION:
        for (int i = 0; i < n->n_alt; i++) first_bytes(n->alt[i], set);
        break;
    }
}

/* The cost of the required properties from index idx on: key, colon, shortest value, and a comma
 * before each (before the first too when lead_comma). */
static int required_cost(const js_node *n, int idx, int lead_comma)
{
    int cost = 0, first = 1;
    for (int i = idx; i < n->n_props; i++)
        if (n->required[i]) {
            cost += n->key_len[i] + 1 + n->props[i]->min_len + (first && !lead_comma ? 0 : 1);
            first = 0;
        }
    return cost;
}

static js_node *compile(cctx *c, json_t *schema, const char *path, int depth);

static js_node *union_of(cctx *c, js_node **alts, int n, const char *path)
{
    if (n == 1) return alts[0];
    unsigned char seen[256] = {0};
    for (int i = 0; i < n; i++) {
        unsigned char set[256] = {0};
        first_bytes(alts[i], set);
        for (int b = 0; b < 256; b++)
            if (set[b] && seen[b]) {
                compile_error(c, "%s: alternatives (anyOf, oneOf or a list of types) must differ in their JSON type", path);
                return NULL;
            } else if (set[b]) seen[b] = 1;
    }
    js_node *u = new_node(c, JS_UNION);
    if (!u || !(u->alt = malloc((size_t)n * sizeof *u->alt))) return NULL;
    memcpy(u->alt, alts, (size_t)n * sizeof *alts);
    u->n_alt = n;
    u->min_len = 1 << 30;
    for (int i = 0; i < n; i++)
        if (alts[i]->min_len < u->min_len) u->min_len = alts[i]->min_len;
    return u;
}

static int get_count(cctx *c, json_t *schema, const char *key, const char *path, int *out)
{
    json_t *v = json_object_get(schema, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100000)
        return compile_error(c, "%s: \"%s\" must be a non-negative integer", path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static js_node *compile_object(cctx *c, json_t *schema, const char *path, int depth)
{
    js_node *n = new_node(c, JS_OBJECT);
    json_t *props = json_object_get(schema, "properties"), *req = json_object_get(schema, "required");
    if (!n) return NULL;
    if (props && !json_is_object(props)) return compile_error(c, "%s: \"properties\" must be an object", path), NULL;
    if (req && !json_is_array(req)) return compile_error(c, "%s: \"required\" must be an array of names", path), NULL;
    size_t np = props ? json_object_size(props) : 0;
    if (np > JS_MAX_CHOICES) return compile_error(c, "%s: at most %d properties are supported", path, JS_MAX_CHOICES), NULL;
    n->keys = calloc(np + 1, sizeof *n->keys);
    n->key_len = calloc(np + 1, sizeof *n->key_len);
    n->props = calloc(np + 1, sizeof *n->props);
    n->required = calloc(np + 1, 1);
    if (!n->keys || !n->key_len || !n->props || !n->required) return NULL;
    const char *name;
    json_t *sub;
    json_object_foreach (props, name, sub) {
        char sub_path[256];
        snprintf(sub_path, sizeof sub_path, "%s.properties.%s", path, name);
        json_t *key = json_string(name);
        n->keys[n->n_props] = key ? json_dumps(key, JSON_ENCODE_ANY) : NULL;
        json_decref(key);
        if (!n->keys[n->n_props]) return NULL;
        n->key_len[n->n_props] = (int)strlen(n->keys[n->n_props]);
        n->n_props++; /* counted before the value, so that a failure frees the key */
        if (!(n->props[n->n_props - 1] = compile(c, sub, sub_path, depth + 1))) return NULL;
    }
    size_t i;
    json_t *r;
    json_array_foreach (req, i, r) {
        int found = -1;
        for (int k = 0; json_is_string(r) && k < n->n_props; k++) {
            json_t *key = json_string(json_string_value(r));
            char *text = json_dumps(key, JSON_ENCODE_ANY);
            json_decref(key);
            if (text && strcmp(text, n->keys[k]) == 0) found = k;
            free(text);
        }
        if (found < 0)
            return compile_error(c, "%s: required property %s has no schema in \"properties\"", path,
                                 json_is_string(r) ? json_string_value(r) : "(not a string)"),
                   NULL;
        n->required[found] = 1;
    }
    n->min_len = 2 + required_cost(n, 0, 0);
    return n;
}

static js_node *compile_array(cctx *c, json_t *schema, const char *path, int depth)
{
    js_node *n = new_node(c, JS_ARRAY);
    json_t *items = json_object_get(schema, "items");
    if (!n) return NULL;
    if (items && !json_is_object(items) && !json_is_boolean(items))
        return compile_error(c, "%s: \"items\" must be one schema (tuples, prefixItems, are not supported)", path), NULL;
    char sub_path[256];
    snprintf(sub_path, sizeof sub_path, "%s.items", path);
    if (!(n->items = items ? compile(c, items, sub_path, depth + 1) : &ANY_VALUE)) return NULL;
    if (get_count(c, schema, "minItems", path, &n->min_items)) return NULL;
    if (get_count(c, schema, "maxItems", path, &n->max_items)) return NULL;
    if (n->max_items >= 0 && n->max_items < n->min_items) return compile_error(c, "%s: maxItems is below minItems", path), NULL;
    int m = n->items->min_len;
    n->min_len = 2 + (n->min_items ? n->min_items * m + n->min_items - 1 : 0);
    return n;
}

/* minimum, maximum, exclusiveMinimum, exclusiveMaximum of a number: the ones the automaton keeps to
 * are accepted: bounds that its numbers (at most 15 integer digits, and with a bound no exponent)
 * always meet, such as the safe-integer range clients send for integers, and minimum 0 (no minus
 * sign). Any other bound is refused by name. */
static int compile_bounds(cctx *c, json_t *schema, const char *path, js_node *n)
{
    static const char *const keys[] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    const double limit = 999999999999999.0; /* 15 nines: beyond every number the automaton writes */
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(schema, keys[i]);
        if (!v) continue;
        if (!json_is_number(v)) return compile_error(c, "%s: \"%s\" must be a number", path, keys[i]);
        double b = json_number_value(v);
        int lower = i < 2, exclusive = i % 2;
        n->no_exponent = 1;
        if (lower ? b < -limit - exclusive || (b <= -limit - 1 && exclusive) : b > limit || (b >= limit + 1 && exclusive))
            continue;
        if (lower && !exclusive && b == 0) {
            n->nonneg = 1;
            continue;
        }
        return compile_error(c, "%s: \"%s\": %g is not supported (only 0 as a minimum, or bounds beyond 15 digits)", path,
                             keys[i], b);
    }
    return 0;
}

/* One "type" name into a node. */
static js_node *compile_type(cctx *c, json_t *schema, const char *type, const char *path, int depth)
{
    static const char *const bools[] = {"true", "false"}, *const null[] = {"null"};
    if (!strcmp(type, "object")) return compile_object(c, schema, path, depth);
    if (!strcmp(type, "array")) return compile_array(c, schema, path, depth);
    if (!strcmp(type, "boolean")) return literals(c, bools, 2);
    if (!strcmp(type, "null")) return literals(c, null, 1);
    if (!strcmp(type, "integer") || !strcmp(type, "number")) {
        js_node *n = new_node(c, type[0] == 'i' ? JS_INTEGER : JS_NUMBER);
        if (!n || compile_bounds(c, schema, path, n)) return NULL;
        n->min_len = 1;
        return n;
    }
    if (!strcmp(type, "string")) {
        js_node *n = new_node(c, JS_STRING);
        if (!n || get_count(c, schema, "minLength", path, &n->min_chars) ||
            get_count(c, schema, "maxLength", path, &n->max_chars))
            return NULL;
        if (n->max_chars >= 0 && n->max_chars < n->min_chars) return compile_error(c, "%s: maxLength is below minLength", path), NULL;
        n->min_len = 2 + n->min_chars;
        return n;
    }
    return compile_error(c, "%s: unknown type \"%s\"", path, type), NULL;
}

static const char *const ANNOTATIONS[] = {"title", "description", "default", "examples", "format", "$schema", "$id",
                                          "$comment", "$defs", "definitions", "additionalProperties", "strict", NULL};
static const char *const STRUCTURE[] = {"type", "properties", "required", "items", "enum", "const", "anyOf", "oneOf",
                                        "nullable", "minItems", "maxItems", "minLength", "maxLength", "$ref", "minimum",
                                        "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL};

static int in_list(const char *key, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(key, list[i])) return 1;
    return 0;
}

static js_node *compile_ref(cctx *c, const char *ref, const char *path, int depth)
{
    const char *name = NULL;
    json_t *defs = NULL;
    if (!strncmp(ref, "#/$defs/", 8)) name = ref + 8, defs = json_object_get(c->root, "$defs");
    else if (!strncmp(ref, "#/definitions/", 14)) name = ref + 14, defs = json_object_get(c->root, "definitions");
    json_t *target = name ? json_object_get(defs, name) : NULL;
    if (!strcmp(ref, "#")) target = c->root;
    if (!target) return compile_error(c, "%s: \"$ref\" %s is not a local #/$defs/... or #/definitions/... entry", path, ref), NULL;
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i], ref)) return compile_error(c, "%s: recursive \"$ref\" %s is not supported", path, ref), NULL;
    if (c->n_refs == JS_MAX_DEPTH) return compile_error(c, "%s: \"$ref\" nested too deeply", path), NULL;
    c->refs[c->n_refs++] = ref;
    js_node *n = compile(c, target, ref, depth + 1);
    c->n_refs--;
    return n;
}

static js_node *compile_alternatives(cctx *c, json_t *list, const char *key, const char *path, int depth)
{
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 8)
        return compile_error(c, "%s: \"%s\" must be an array of 1 to 8 schemas", path, key), NULL;
    js_node *alts[8];
    size_t i;
    json_t *a;
    json_array_foreach (list, i, a) {
        char sub_path[256];
        snprintf(sub_path, sizeof sub_path, "%s.%s[%zu]", path, key, i);
        if (!(alts[i] = compile(c, a, sub_path, depth + 1))) return NULL;
    }
    return union_of(c, alts, (int)json_array_size(list), path);
}

static js_node *compile_enum(cctx *c, json_t *schema, const char *path)
{
    json_t *e = json_object_get(schema, "enum"), *k = json_object_get(schema, "const");
    json_t *values = e ? json_incref(e) : json_pack("[O]", k);
    if (!json_is_array(values) || json_array_size(values) == 0 || json_array_size(values) > JS_MAX_CHOICES) {
        json_decref(values);
        return compile_error(c, "%s: \"enum\" must be an array of 1 to %d values", path, JS_MAX_CHOICES), NULL;
    }
    const char *texts[JS_MAX_CHOICES];
    size_t i;
    json_t *v;
    int n = 0;
    json_array_foreach (values, i, v) texts[n++] = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    js_node *node = NULL;
    int ok = 1;
    for (int j = 0; j < n; j++) ok = ok && texts[j];
    if (ok) node = literals(c, texts, n);
    for (int j = 0; j < n; j++) free((char *)texts[j]);
    json_decref(values);
    return node;
}

static js_node *compile(cctx *c, json_t *schema, const char *path, int depth)
{
    if (depth > JS_MAX_DEPTH) return compile_error(c, "%s: the schema is nested too deeply", path), NULL;
    if (json_is_true(schema)) return &ANY_VALUE;
    if (!json_is_object(schema)) return compile_error(c, "%s: a schema must be an object", path), NULL;
    const char *key;
    json_t *v;
    json_object_foreach (schema, key, v)
        if (!in_list(key, ANNOTATIONS) && !in_list(key, STRUCTURE))
            return compile_error(c, "%s: the keyword \"%s\" is not supported", path, key), NULL;
    js_node *n = NULL;
    json_t *type = json_object_get(schema, "type"), *ref = json_object_get(schema, "$ref");
    if (ref) n = json_is_string(ref) ? compile_ref(c, json_string_value(ref), path, depth)
                                     : (compile_error(c, "%s: \"$ref\" must be a string", path), NULL);
    else if (json_object_get(schema, "enum") || json_object_get(schema, "const")) n = compile_enum(c, schema, path);
    else if (json_object_get(schema, "anyOf")) n = compile_alternatives(c, json_object_get(schema, "anyOf"), "anyOf", path, depth);
    else if (json_object_get(schema, "oneOf")) n = compile_alternatives(c, json_object_get(schema, "oneOf"), "oneOf", path, depth);
    else if (json_is_string(type)) n = compile_type(c, schema, json_string_value(type), path, depth);
    else if (json_is_array(type) && json_array_size(type) > 0 && json_array_size(type) <= 7) {
        js_node *alts[7];
        size_t i;
        json_t *t;
        json_array_foreach (type, i, t) {
            if (!json_is_string(t)) return compile_error(c, "%s: \"type\" lists must hold names", path), NULL;
            if (!(alts[i] = compile_type(c, schema, json_string_value(t), path, depth))) return NULL;
        }
        n = union_of(c, alts, (int)json_array_size(type), path);
    } else if (type) return compile_error(c, "%s: \"type\" must be a name or a list of names", path), NULL;
    else if (json_object_get(schema, "properties")) n = compile_object(c, schema, path, depth);
    else n = &ANY_VALUE;
    if (n && json_is_true(json_object_get(schema, "nullable"))) {
        static const char *const null[] = {"null"};
        js_node *alts[2] = {n, literals(c, null, 1)};
        n = alts[1] ? union_of(c, alts, 2, path) : NULL;
    }
    return n;
}

sasp_json_schema *sasp_json_schema_compile(const void *schema, char *err, size_t errlen)
{
    sasp_json_schema *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cctx c = {.s = s, .root = (json_t *)schema, .err = err, .errlen = errlen};
    if (schema) s->root = compile(&c, (json_t *)schema, "schema", 0);
    else if ((s->root = new_node(&c, JS_OBJECT))) s->root->min_len = 2; /* any object */
    if (!s->root) {
        if (!err[0]) snprintf(err, errlen, "out of memory");
        sasp_json_schema_free(s);
        return NULL;
    }
    return s;
}

void sasp_json_schema_free(sasp_json_schema *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_all; i++) {
        js_node *n = s->all[i];
        for (int k = 0; k < n->n_props; k++) free(n->keys[k]);
        for (int k = 0; k < n->n_lit; k++) free(n->lit[k]);
        free(n->keys), free(n->key_len), free(n->props), free(n->required);
        free(n->lit), free(n->lit_len), free(n->alt);
        free(n);
    }
    free(s->all);
    free(s);
}

int sasp_json_schema_min_len(const sasp_json_schema *s) { return s->root->min_len; }

/* ---------------------------------------------------------------------------------------------
 * The automaton */

static int is_ws(unsigned char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static js_frame *push(sasp_json_state *st, int kind, const js_node *node)
{
    if (st->depth == JS_MAX_DEPTH) return NULL;
    js_frame *f = &st->f[st->depth++];
    *f = (js_frame){.node = node, .kind = (uint8_t)kind};
    return f;
}

/* The top frame's value is complete: pop it and tell its container. */
static void pop_done(sasp_json_state *st)
{
    if (--st->depth == 0) {
        st->done = 1;
        return;
    }
    js_frame *p = &st->f[st->depth - 1];
    if (p->kind == F_OBJECT) p->sub = p->sub == O_FREEKEY ? O_COLON : O_AFTER;
    else if (p->kind == F_ARRAY) p->count++, p->sub = A_AFTER;
    p->ws = 0;
}

static int take_ws(js_frame *f)
{
    if (f->ws >= JS_MAX_WS) return -1;
    f->ws++;
    return 0;
}

/* Turn frame f (a value about to start) into the frame of node's value, starting with byte c. */
static int start_value(sasp_json_state *st, js_frame *f, const js_node *n, unsigned char c)
{
    switch (n->kind) {
    case JS_ANY:
        if (c == '{') return start_value(st, f, &ANY_OBJECT, c);
        if (c == '[') return start_value(st, f, &ANY_ARRAY, c);
        if (c == '"') return start_value(st, f, &ANY_STRING, c);
        if (c == '-' || is_digit(c)) return start_value(st, f, &ANY_NUMBER, c);
        return start_value(st, f, &ANY_LITERAL, c);
    case JS_UNION:
        for (int i = 0; i < n->n_alt; i++) {
            unsigned char set[256] = {0};
            first_bytes(n->alt[i], set);
            if (set[c]) return start_value(st, f, n->alt[i], c);
        }
        return -1;
    case JS_OBJECT:
        if (c != '{') return -1;
        *f = (js_frame){.node = n, .kind = F_OBJECT, .sub = O_START};
        return 0;
    case JS_ARRAY:
        if (c != '[') return -1;
        *f = (js_frame){.node = n, .kind = F_ARRAY, .sub = A_START};
        return 0;
    case JS_STRING:
        if (c != '"') return -1;
        *f = (js_frame){.node = n, .kind = F_STRING, .sub = S_CHARS};
        return 0;
    case JS_INTEGER:
    case JS_NUMBER:
        if ((c != '-' || n->nonneg) && !is_digit(c)) return -1;
        *f = (js_frame){.node = n, .kind = F_NUMBER, .sub = c == '-' ? N_MINUS : c == '0' ? N_ZERO
                                                                                          : N_INT,
                        .count = is_digit(c) && c != '0'};
        return 0;
    case JS_LITERALS: {
        uint64_t m = 0;
        for (int i = 0; i < n->n_lit; i++)
            if ((unsigned char)n->lit[i][0] == c) m |= 1ULL << i;
        if (!m) return -1;
        *f = (js_frame){.node = n, .kind = F_LITERAL, .pos = 1, .choices = m};
        return 0;
    }
    }
    return -1;
}

/* The keys that may come next in an object at property index idx: the optional ones up to and
 * including the next required one. */
static uint64_t allowed_keys(const js_node *n, int idx)
{
    uint64_t m = 0;
    for (int i = idx; i < n->n_props; i++) {
        m |= 1ULL << i;
        if (n->required[i]) break;
    }
    return m;
}

static int can_close_object(const js_node *n, int idx)
{
    for (int i = idx; i < n->n_props; i++)
        if (n->required[i]) return 0;
    return 1;
}

static int begin_key(sasp_json_state *st, js_frame *f)
{
    const js_node *n = f->node;
    if (n->n_props == 0) { /* any key */
        f->sub = O_FREEKEY;
        return push(st, F_KEYSTR, &ANY_STRING) ? 0 : -1;
    }
    f->choices = allowed_keys(n, f->count);
    if (!f->choices) return -1;
    f->sub = O_KEY;
    f->pos = 1; /* every key starts with its quote */
    return 0;
}

static int feed_key(js_frame *f, unsigned char c)
{
    const js_node *n = f->node;
    uint64_t m = 0;
    for (int i = 0; i < n->n_props; i++)
        if ((f->choices >> i & 1) && f->pos < n->key_len[i] && (unsigned char)n->keys[i][f->pos] == c) m |= 1ULL << i;
    if (!m) return -1;
    f->choices = m;
    f->pos++;
    for (int i = 0; i < n->n_props; i++)
        if ((m >> i & 1) && n->key_len[i] == f->pos) { /* the closing quote: exactly this key */
            f->cur = (int16_t)i;
            f->count = i + 1;
            f->sub = O_COLON;
            f->ws = 0;
        }
    return 0;
}

static int feed_object(sasp_json_state *st, js_frame *f, unsigned char c)
{
    const js_node *n = f->node;
    if (f->sub == O_KEY) return feed_key(f, c);
    if (is_ws(c)) return take_ws(f);
    f->ws = 0;
    switch (f->sub) {
    case O_START:
        if (c == '"') return begin_key(st, f);
        if (c == '}' && (n->n_props == 0 || can_close_object(n, 0))) return pop_done(st), 0;
        return -1;
    case O_NEXT:
        return c == '"' ? begin_key(st, f) : -1;
    case O_AFTER:
        if (c == ',' && (n->n_props == 0 || f->count < n->n_props)) return f->sub = O_NEXT, 0;
        if (c == '}' && (n->n_props == 0 || can_close_object(n, f->count))) return pop_done(st), 0;
        return -1;
    case O_COLON:
        if (c != ':') return -1;
        f->sub = O_VALUE;
        return push(st, F_VALUE, n->n_props ? n->props[f->cur] : &ANY_VALUE) ? 0 : -1;
    }
    return -1;
}

static int feed_array(sasp_json_state *st, js_frame *f, unsigned char c)
{
    const js_node *n = f->node;
    if (is_ws(c)) return take_ws(f);
    f->ws = 0;
    if ((f->sub == A_START || f->sub == A_AFTER) && c == ']')
        return f->count >= n->min_items ? (pop_done(st), 0) : -1;
    if (f->sub == A_AFTER)
        return c == ',' && (n->max_items < 0 || f->count < n->max_items) ? (f->sub = A_NEXT, 0) : -1;
    if (f->sub == A_START && n->max_items == 0) return -1;
    f->sub = A_VALUE;
    js_frame *v = push(st, F_VALUE, n->items);
    return v ? start_value(st, v, n->items, c) : -1;
}

/* A UTF-8 lead byte: the continuation bytes it needs and the range of the first one. */
static int utf8_lead(unsigned char c, int *n, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) *n = 1;
    else if (c == 0xE0) *n = 2, *lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) *n = 2;
    else if (c == 0xED) *n = 2, *hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) *n = 2;
    else if (c == 0xF0) *n = 3, *lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) *n = 3;
    else if (c == 0xF4) *n = 3, *hi = 0x8F;
    else return -1;
    return 0;
}

static int feed_string(sasp_json_state *st, js_frame *f, unsigned char c)
{
    const js_node *n = f->node;
    int full = n->max_chars >= 0 && f->count >= n->max_chars;
    switch (f->sub) {
    case S_CHARS:
        if (c == '"') return f->count >= n->min_chars ? (pop_done(st), 0) : -1;
        if (c < 0x20 || full) return -1;
        if (c == '\\') return f->sub = S_ESC, 0;
        f->count++;
        if (c < 0x80) return 0;
        int need;
        if (utf8_lead(c, &need, &f->lo, &f->hi)) return -1;
        f->pending = (int16_t)need;
        f->sub = S_UTF8;
        return 0;
    case S_ESC:
        if (c == 'u') return f->sub = S_HEX, f->pending = 4, 0;
        if (!strchr("\"\\/bfnrt", c) || c == 0) return -1;
        f->count++;
        f->sub = S_CHARS;
        return 0;
    case S_HEX:
        /* no \uD800-\uDFFF: a lone surrogate is refused by strict parsers */
        if (!is_hex(c) || (f->pending == 3 && (f->lo == 'd' || f->lo == 'D') && !(c >= '0' && c <= '7'))) return -1;
        if (f->pending == 4) f->lo = c;
        if (--f->pending == 0) f->count++, f->sub = S_CHARS;
        return 0;
    case S_UTF8:
        if (c < f->lo || c > f->hi) return -1;
        f->lo = 0x80, f->hi = 0xBF;
        if (--f->pending == 0) f->sub = S_CHARS;
        return 0;
    }
    return -1;
}

static int number_accepting(const js_frame *f)
{
    return f->sub == N_ZERO || f->sub == N_INT || f->sub == N_FRAC || f->sub == N_EXP;
}

static int feed_number(js_frame *f, unsigned char c)
{
    int integer = f->node->kind == JS_INTEGER, d = is_digit(c);
    switch (f->sub) {
    case N_MINUS:
        if (!d) return -1;
        f->sub = c == '0' ? N_ZERO : N_INT, f->count = 1;
        return 0;
    case N_ZERO:
    case N_INT:
        if (d && f->sub == N_INT && f->count < MAX_INT_DIGITS) return f->count++, 0;
        if (d) return -1; /* a leading zero, or too many digits */
        if (!integer && c == '.') return f->sub = N_DOT, 0;
        if (!integer && !f->node->no_exponent && (c == 'e' || c == 'E')) return f->sub = N_E, 0;
        return AGAIN;
    case N_DOT:
        return d ? (f->sub = N_FRAC, f->count = 1, 0) : -1;
    case N_FRAC:
        if (d) return f->count < MAX_FRAC_DIGITS ? (f->count++, 0) : -1;
        if (!f->node->no_exponent && (c == 'e' || c == 'E')) return f->sub = N_E, 0;
        return AGAIN;
    case N_E:
        if (c == '+' || c == '-') return f->sub = N_ESIGN, 0;
        return d ? (f->sub = N_EXP, f->count = 1, 0) : -1;
    case N_ESIGN:
        return d ? (f->sub = N_EXP, f->count = 1, 0) : -1;
    case N_EXP:
        if (d) return f->count < MAX_EXP_DIGITS ? (f->count++, 0) : -1;
        return AGAIN;
    }
    return -1;
}

/* Whether some candidate of a literal frame is complete at its position; whether one goes on. */
static int literal_complete(const js_frame *f)
{
    for (int i = 0; i < f->node->n_lit; i++)
        if ((f->choices >> i & 1) && f->node->lit_len[i] == f->pos) return 1;
    return 0;
}
static int literal_continues(const js_frame *f)
{
    for (int i = 0; i < f->node->n_lit; i++)
        if ((f->choices >> i & 1) && f->node->lit_len[i] > f->pos) return 1;
    return 0;
}

static int feed_literal(sasp_json_state *st, js_frame *f, unsigned char c)
{
    uint64_t m = 0;
    for (int i = 0; i < f->node->n_lit; i++)
        if ((f->choices >> i & 1) && f->pos < f->node->lit_len[i] && (unsigned char)f->node->lit[i][f->pos] == c)
            m |= 1ULL << i;
    if (!m) return literal_complete(f) ? AGAIN : -1;
    f->choices = m;
    f->pos++;
    if (!literal_continues(f)) pop_done(st); /* nothing can follow inside it: done now */
    return 0;
}

void js_init(sasp_json_state *st, const sasp_json_schema *s)
{
    st->depth = 0;
    st->done = 0;
    push(st, F_VALUE, s->root);
}

int js_feed(sasp_json_state *st, unsigned char c)
{
    for (;;) {
        if (st->done || st->depth == 0) return -1;
        js_frame *f = &st->f[st->depth - 1];
        int r;
        switch (f->kind) {
        case F_VALUE:
            if (is_ws(c)) return take_ws(f);
            return start_value(st, f, f->node, c);
        case F_OBJECT: return feed_object(st, f, c);
        case F_ARRAY: return feed_array(st, f, c);
        case F_STRING:
        case F_KEYSTR: return feed_string(st, f, c);
        case F_NUMBER: r = feed_number(f, c); break;
        case F_LITERAL: r = feed_literal(st, f, c); break;
        default: return -1;
        }
        if (r != AGAIN) return r;
        pop_done(st); /* a number or literal ended: the byte is its container's */
    }
}

int js_complete(const sasp_json_state *st)
{
    if (st->done) return 1;
    if (st->depth != 1) return 0;
    const js_frame *f = &st->f[0];
    return (f->kind == F_NUMBER && number_accepting(f)) || (f->kind == F_LITERAL && literal_complete(f));
}

/* The fewest bytes that close one frame, given its sub-state (its child frames count for themselves). */
static int frame_close(const js_frame *f)
{
    const js_node *n = f->node;
    int deficit;
    switch (f->kind) {
    case F_VALUE: return n->min_len;
    case F_STRING:
    case F_KEYSTR:
        deficit = n->min_chars - f->count - (f->sub == S_ESC || f->sub == S_HEX);
        return (f->sub == S_ESC ? 1 : f->sub == S_HEX || f->sub == S_UTF8 ? f->pending
                                                                          : 0) +
               (deficit > 0 ? deficit : 0) + 1;
    case F_NUMBER: return number_accepting(f) ? 0 : 1;
    case F_LITERAL: {
        int best = 1 << 30;
        for (int i = 0; i < n->n_lit; i++)
            if ((f->choices >> i & 1) && n->lit_len[i] - f->pos < best) best = n->lit_len[i] - f->pos;
        return best;
    }
    case F_ARRAY: {
        int m = n->items->min_len, done = f->count + (f->sub == A_VALUE);
        deficit = n->min_items - done;
        if (f->sub == A_NEXT && deficit < 1) deficit = 1;
        if (deficit < 0) deficit = 0;
        if (f->sub == A_START || f->sub == A_NEXT) return deficit ? deficit * m + deficit - 1 + 1 : 1;
        return deficit * (1 + m) + 1;
    }
    case F_OBJECT:
        if (n->n_props == 0) /* any keys: "" : 0 */
            return f->sub == O_NEXT ? 5 : f->sub == O_FREEKEY || f->sub == O_COLON ? 3
                                                                                   : 1;
        switch (f->sub) {
        case O_START: return required_cost(n, f->count, 0) + 1;
        case O_AFTER: return required_cost(n, f->count, 1) + 1;
        case O_COLON: return 1 + n->props[f->cur]->min_len + required_cost(n, f->cur + 1, 1) + 1;
        case O_VALUE: return required_cost(n, f->cur + 1, 1) + 1;
        case O_NEXT:
        case O_KEY: {
            if (f->sub == O_NEXT && !can_close_object(n, f->count)) return required_cost(n, f->count, 0) + 1;
            /* after a comma one property must come, the cheapest of those allowed */
            int best = 1 << 30;
            uint64_t m = f->sub == O_KEY ? f->choices : allowed_keys(n, f->count);
            int typed = f->sub == O_KEY ? f->pos : 0;
            for (int i = 0; i < n->n_props; i++)
                if (m >> i & 1) {
                    int c = n->key_len[i] - typed + 1 + n->props[i]->min_len + required_cost(n, i + 1, 1);
                    if (c < best) best = c;
                }
            return best + 1;
        }
        }
    }
    return 0;
}

int js_min_close(const sasp_json_state *st)
{
    if (st->done) return 0;
    int total = 0;
    for (int i = st->depth - 1; i >= 0; i--) {
        const js_frame *f = &st->f[i];
        if (i == 0 && st->depth == 1 && js_complete(st)) return 0;
        total += frame_close(f);
    }
    return total;
}

int js_free_string_room(const sasp_json_state *st)
{
    if (st->done || st->depth == 0) return -1;
    const js_frame *f = &st->f[st->depth - 1];
    if ((f->kind != F_STRING && f->kind != F_KEYSTR) || f->sub != S_CHARS) return -1;
    return f->node->max_chars < 0 ? INT_MAX : f->node->max_chars - f->count;
}
