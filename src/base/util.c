/* util.c: the monotonic clock and the growable buffer of util.h. */
#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t sasp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Room for `more` bytes and the terminating NUL. */
static int reserve(sasp_buf *b, size_t more)
{
    if (b->oom) return -1;
    if (b->len + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int sasp_buf_append(sasp_buf *b, const char *s, size_t n)
{
    if (reserve(b, n)) return -1;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int sasp_buf_puts(sasp_buf *b, const char *s) { return sasp_buf_append(b, s, strlen(s)); }

int sasp_buf_printf(sasp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (w < 0 || reserve(b, (size_t)w)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)w + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)w;
    return 0;
}

char *sasp_buf_take(sasp_buf *b, size_t *len)
{
    if (!b->oom && reserve(b, 0) == 0) {
        char *p = b->data;
        if (len) *len = b->len;
        *b = (sasp_buf){0};
        return p;
    }
    sasp_buf_free(b);
    if (len) *len = 0;
    return NULL;
}

void sasp_buf_free(sasp_buf *b)
{
    free(b->data);
    *b = (sasp_buf){0};
}
