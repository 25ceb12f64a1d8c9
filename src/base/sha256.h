/* sha256.h: SHA-256 (FIPS 180-4) of a file, for the digests Ollama's model listings carry. */
#ifndef SASP_SHA256_H
#define SASP_SHA256_H

/* The hex digest of the file at path into hex (65 bytes). 0, or -1 when it cannot be read. */
int sasp_sha256_file(const char *path, char hex[65]);

#endif
