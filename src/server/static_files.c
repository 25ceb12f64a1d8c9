/* static_files.c: the files of --www (the demo page) at /, for GET and HEAD of any path outside /v1/
 * and /api/ that no route takes: a directory's index.html, the Content-Type of the file's extension;
 * nothing outside the directory (no ".." segment, no link leading out). */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/reply.h"
#include "server/handlers.h"

static const char *g_www;         /* --www */
static char g_www_real[PATH_MAX]; /* its real path */
static int g_have_www;

void static_files_init(const char *www)
{
    g_www = www;
    g_have_www = realpath(www, g_www_real) != NULL;
    if (!g_have_www) fprintf(stderr, "sasp-server: note: --www %s does not exist; / will answer 404\n", www);
}

static const char *content_type(const char *path)
{
    static const char *const map[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".md", "text/markdown; charset=utf-8"},
        {".wasm", "application/wasm"},
        {".map", "application/json"},
        {".woff2", "font/woff2"},
        {".webp", "image/webp"},
    };
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof map / sizeof *map; i++)
            if (!strcasecmp(dot, map[i][0])) return map[i][1];
    return "application/octet-stream";
}

enum MHD_Result handle_static(struct MHD_Connection *c, conn *k)
{
    const char *url = k->req.path;
    /* refuse any ".." segment, backslashes and NULs before touching the file system */
    int bad_path = url[0] != '/' || strchr(url, '\\') != NULL;
    for (const char *p = url; *p && !bad_path; p++)
        if (p[0] == '.' && p[1] == '.' && (p == url || p[-1] == '/') && (p[2] == '/' || p[2] == 0)) bad_path = 1;
    if (bad_path) return reply_errorf(c, k, 404, "not_found_error", NULL, "%s", "no such file");
    if (!g_have_www) return reply_errorf(c, k, 404, "not_found_error", NULL, "no static files: %s does not exist", g_www);
    char path[PATH_MAX], real[PATH_MAX];
    int w = snprintf(path, sizeof path, "%s%s", g_www_real, url);
    if (w < 0 || (size_t)w >= sizeof path - 16) return reply_errorf(c, k, 404, "not_found_error", NULL, "%s", "no such file");
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) strcat(path, path[w - 1] == '/' ? "index.html" : "/index.html");
    if (!realpath(path, real)) return reply_errorf(c, k, 404, "not_found_error", NULL, "no such file: %s", url);
    size_t rl = strlen(g_www_real);
    if (strncmp(real, g_www_real, rl) != 0 || real[rl] != '/')
        return reply_errorf(c, k, 404, "not_found_error", NULL, "%s", "no such file");
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0) close(fd);
        return reply_errorf(c, k, 404, "not_found_error", NULL, "no such file: %s", url);
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", content_type(real));
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    return reply_queue(c, k, 200, r);
}
