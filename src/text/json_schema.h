/* json_schema.h: a byte-level automaton that accepts exactly the JSON documents of a schema, for
 * constrained decoding (constrain.h masks the tokens whose bytes it would reject).
 *
 * A schema is compiled once from a JSON Schema object (the subset that clients send: type, properties,
 * required, items, enum, const, anyOf / oneOf and type lists whose alternatives differ in their JSON
 * type, nullable, minItems / maxItems, minLength / maxLength, additionalProperties, local $ref into
 * $defs / definitions, and the annotations title, description, default, examples, format, $schema,
 * $id, $comment; of numeric bounds, minimum 0 and the bounds its numbers always meet, such as the
 * safe-integer range clients send for integers). Any other keyword or value is refused by name, so
 * what is accepted is also enforced.
 * Objects are written with their properties in the schema's order: required ones always, optional
 * ones when the model chooses them; with no "properties" an object takes any keys and values.
 * Numbers are bounded (15 integer digits, 15 fraction digits, 2 exponent digits) and white space
 * between tokens to runs of JS_MAX_WS bytes, so that every document can be finished.
 *
 * A state is a small value (a stack of frames, copied freely): js_feed advances it by one byte;
 * js_min_close says how many more bytes at least finish the document, so that a caller with a
 * budget of bytes left can keep to documents it can still close. */
#ifndef SASP_JSON_SCHEMA_H
#define SASP_JSON_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#define JS_MAX_DEPTH 32   /* nesting of containers and values */
#define JS_MAX_CHOICES 64 /* properties of one object, values of one enum */
#define JS_MAX_WS 32      /* bytes of one run of white space */

typedef struct js_node js_node;

typedef struct sasp_json_schema {
    js_node *root;
    js_node **all; /* every node, for freeing */
    int n_all, cap_all;
} sasp_json_schema;

/* Compile schema (a jansson json_t *; NULL: any JSON object, the "json_object" / format "json"
 * mode). NULL with a message naming the keyword or path on what is not supported. */
sasp_json_schema *sasp_json_schema_compile(const void *schema, char *err, size_t errlen);
void sasp_json_schema_free(sasp_json_schema *s);
/* Bytes of the shortest document of the schema. */
int sasp_json_schema_min_len(const sasp_json_schema *s);

typedef struct js_frame {
    const js_node *node;
    uint8_t kind, sub;
    uint8_t lo, hi;   /* strings: the range of the next UTF-8 continuation byte */
    int16_t ws;       /* length of the current white-space run */
    int16_t pending;  /* strings: escape or UTF-8 bytes still due */
    int32_t count;    /* characters of a string, items of an array, next property of an object, digits */
    int32_t pos;      /* position in a literal or key being matched */
    int16_t cur;      /* objects: the property whose value comes or is being written */
    uint64_t choices; /* candidates still matching (keys of an object, enum values) */
} js_frame;

typedef struct sasp_json_state {
    int depth; /* frames in use */
    int done;  /* the root value is complete and closed */
    js_frame f[JS_MAX_DEPTH];
} sasp_json_state;

void js_init(sasp_json_state *st, const sasp_json_schema *s);
/* Advance by one byte. 0, or -1 when the byte cannot come next (the state is then unusable: feed a
 * copy when testing). */
int js_feed(sasp_json_state *st, unsigned char byte);
/* Whether the document is complete (nothing more may follow). */
int js_complete(const sasp_json_state *st);
/* The fewest bytes that finish the document from here (0 when complete). */
int js_min_close(const sasp_json_state *st);
/* Whether the state is inside a string whose characters are free (no escape or UTF-8 sequence
 * pending, no enum or key to match), and how many more characters it may take then (INT_MAX without
 * a maxLength), or -1 when it is not inside such a string. Any run of at most that many plain string
 * characters is accepted and does not raise js_min_close. */
int js_free_string_room(const sasp_json_state *st);

#endif
