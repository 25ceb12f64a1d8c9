/* fuzz_tokenizer.c: fuzz target of the tokenizer (src/text/tokenizer.c) with tests/fixtures/tokenizer.
 * Input byte 0: bit 0 allows special tokens, bit 1 picks the mode.
 *   text mode: the rest is text; encode it, check the ids are in the vocabulary, that decoding gives
 *     the text back byte for byte, that pre-tokenisation cuts it into increasing pieces ending at its
 *     end, and that the streaming decoder, fed the ids one at a time, writes only valid UTF-8 (the
 *     very text when the text was valid UTF-8).
 *   ids mode: the rest is little-endian 16-bit token ids (some past the vocabulary) for the streaming
 *     decoder alone: its output must be valid UTF-8 and fit the capacity it was given. */
#include <string.h>
#include "api/api.h" /* api_utf8_valid */
#include "fuzz.h"
#include "text/tokenizer.h"

static sasp_tokenizer *tok;
static int vocab;

static void setup(void)
{
    tok = fuzz_load_tokenizer("tests/fixtures/tokenizer/tokenizer.json", "fuzz_tokenizer");
    vocab = sasp_tokenizer_vocab_size(tok);
}

/* Stream ids through the decoder; returns the malloc'd output (length *len). */
static char *stream_decode(const int *ids, int n, size_t *len)
{
    size_t cap = 16, w = 0;
    char *out = malloc(cap);
    sasp_utf8_stream s;
    sasp_stream_init(&s);
    for (int i = 0; i <= n; i++) {
        size_t nb = 0;
        const char *b = i < n ? sasp_token_bytes(tok, ids[i], &nb) : NULL;
        if (i < n && !b) continue; /* unknown id: nothing to feed */
        size_t need = i < n ? 3 * nb + 8 : 12;
        while (cap - w < need + 16) out = realloc(out, cap *= 2);
        /* guard bytes past the capacity the decoder is told, to see it keep within it */
        memset(out + w + need, 0xA5, 16);
        size_t got = i < n ? sasp_stream_push(&s, b, nb, out + w, need) : sasp_stream_finish(&s, out + w, need);
        FUZZ_CHECK(got <= need);
        for (int g = 0; g < 16; g++) FUZZ_CHECK((unsigned char)out[w + need + g] == 0xA5);
        w += got;
    }
    *len = w;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok) setup();
    if (size < 1) return 0;
    int special = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 2) {
        int n = (int)(len / 2);
        int *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) ids[i] = (int)(data[1 + 2 * i] | data[2 + 2 * i] << 8) % (vocab + 64);
        size_t ol;
        char *out = stream_decode(ids, n, &ol);
        FUZZ_CHECK(api_utf8_valid(out, ol));
        free(out);
        free(ids);
        return 0;
    }
    int *ids = NULL;
    int n = sasp_encode(tok, text, len, special, &ids);
    FUZZ_CHECK(n >= 0);
    FUZZ_CHECK(len == 0 || n > 0);
    for (int i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab);
    for (int i = 0; i < n && !special; i++) FUZZ_CHECK(!sasp_tokenizer_is_special(tok, ids[i]));
    size_t dl = 0;
    char *dec = sasp_decode(tok, ids, n, &dl);
    FUZZ_CHECK(dec != NULL);
    FUZZ_CHECK(dl == len && memcmp(dec, text, len) == 0);
    FUZZ_CHECK(dec[dl] == 0);
    free(dec);

    size_t *ends = NULL;
    int np = sasp_pretokenize(tok, text, len, special, &ends);
    FUZZ_CHECK(np >= 0);
    for (int i = 0; i < np; i++) FUZZ_CHECK(ends[i] > (i ? ends[i - 1] : 0) && ends[i] <= len);
    FUZZ_CHECK(np == 0 ? len == 0 : ends[np - 1] == len);
    free(ends);

    size_t ol;
    char *out = stream_decode(ids, n, &ol);
    FUZZ_CHECK(api_utf8_valid(out, ol));
    if (api_utf8_valid(text, len)) FUZZ_CHECK(ol == len && memcmp(out, text, len) == 0);
    free(out);
    free(ids);
    return 0;
}
