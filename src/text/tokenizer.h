/* tokenizer.h: byte-level BPE, read from a Hugging Face tokenizer.json, encoding exactly as the
 * Python trainer (train/bpe.py) does, and a streaming decoder that never splits a UTF-8 character.
 *
 * Pre-tokenisation is GPT-2's: contractions, letter runs, digit runs, punctuation runs and whitespace
 * runs (so indentation is its own token), with Unicode classes from PCRE2. Bytes that are not valid
 * UTF-8 are not lost: each such byte is a pre-token of its own and encodes as its byte token, so
 * decode(encode(x)) == x for any bytes x. */
#ifndef SASP_TOKENIZER_H
#define SASP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct sasp_tokenizer sasp_tokenizer;

/* Load PATH (a tokenizer.json). NULL with a message naming the file and the problem on failure. */
sasp_tokenizer *sasp_tokenizer_load(const char *path, char *err, size_t errlen);
void sasp_tokenizer_free(sasp_tokenizer *t);

int sasp_tokenizer_vocab_size(const sasp_tokenizer *t);
/* The id of a token given by its exact string in tokenizer.json (e.g. "<|endoftext|>"), or -1. */
int sasp_tokenizer_lookup(const sasp_tokenizer *t, const char *token);
/* Whether id is a special (added) token. */
int sasp_tokenizer_is_special(const sasp_tokenizer *t, int id);

/* Encode len bytes of text. Special tokens such as <|endoftext|> are recognised only when
 * allow_special is nonzero; otherwise they are ordinary text. Returns the number of ids and stores a
 * malloc'd array in *ids (the caller frees it), or -1 when out of memory. */
int sasp_encode(const sasp_tokenizer *t, const char *text, size_t len, int allow_special, int **ids);

/* Pre-tokenisation alone, as sasp_encode cuts text before merging (for tests and --tokenize):
 * stores in *ends a malloc'd array of the end offset of each piece (a pre-token, an invalid byte,
 * or a special token when allow_special) and returns how many, or -1 when out of memory. */
int sasp_pretokenize(const sasp_tokenizer *t, const char *text, size_t len, int allow_special, size_t **ends);

/* The raw bytes of token id (not necessarily valid UTF-8 on their own); NULL for an unknown id. */
const char *sasp_token_bytes(const sasp_tokenizer *t, int id, size_t *len);

/* The bytes of n ids concatenated, NUL-terminated, malloc'd (length in *len). Unknown ids are
 * skipped. Returns NULL when out of memory. */
char *sasp_decode(const sasp_tokenizer *t, const int *ids, int n, size_t *len);

/* Streaming decoder: fed token by token, it writes only complete, valid UTF-8. A character split
 * across tokens is held back until a later token completes it; bytes that can never form a valid
 * character become U+FFFD at once; sasp_stream_finish turns whatever is still held into U+FFFD. */
typedef struct sasp_utf8_stream {
    unsigned char held[4];
    int n_held;
} sasp_utf8_stream;

void sasp_stream_init(sasp_utf8_stream *s);
/* Feed the bytes of one token; append the complete characters to out (capacity cap, which must be at
 * least 3 * n + 8). Returns the number of bytes written. */
size_t sasp_stream_push(sasp_utf8_stream *s, const char *bytes, size_t n, char *out, size_t cap);
/* Flush at the end of a stream (capacity cap >= 12). Returns bytes written. */
size_t sasp_stream_finish(sasp_utf8_stream *s, char *out, size_t cap);

#endif
