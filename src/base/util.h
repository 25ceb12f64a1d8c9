/* util.h: the small helpers every part of sasp uses, written once: a monotonic clock and a growable
 * text buffer. */
#ifndef SASP_UTIL_H
#define SASP_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Nanoseconds of CLOCK_MONOTONIC: for durations, never for dates. */
int64_t sasp_now_ns(void);

/* A growable, always NUL-terminated byte buffer. Zero-initialise it ({0}); after an allocation
 * failure every further append is refused and oom stays set, so a caller may append freely and
 * check once at the end. */
typedef struct sasp_buf {
    char *data;
    size_t len, cap;
    int oom;
} sasp_buf;

/* Append n bytes of s. 0, or -1 when out of memory. */
int sasp_buf_append(sasp_buf *b, const char *s, size_t n);
/* Append a NUL-terminated string. */
int sasp_buf_puts(sasp_buf *b, const char *s);
/* Append printf-formatted text. */
int sasp_buf_printf(sasp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the bytes to the caller (free() them; never NULL unless out of memory) and empty the buffer.
 * *len gets their length when len is not NULL. */
char *sasp_buf_take(sasp_buf *b, size_t *len);
void sasp_buf_free(sasp_buf *b);

#endif
