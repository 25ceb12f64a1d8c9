/* slot_file.h: the files of llama.cpp's slot save and restore (POST /slots/{id}?action=save|restore,
 * scheduler.h): a slot's tokens and KV-cache, with the identity of the model they came from, so that a
 * file is restored into that model only. The centring sums are not stored: sasp_kv_copy sums them
 * again over the restored positions.
 *
 * The layout, in the byte order of the machine that wrote it (a file from another order is refused as
 * not a slot file):
 *
 *   "SASPSLOT"  u32 version (1)  u32 arch  u32 n_layers  u32 d_model  u32 vocab_size  u32 n_tokens
 *   char model[64] (the hex SHA-256 of model.safetensors)  u64 checksum (of everything after it)
 *   i32 ids[n_tokens]  f32 keys[n_layers][n_tokens][d_model]  f32 values[n_layers][n_tokens][d_model]
 *
 * A file of another model, of another size than its header says (truncated), whose checksum does not
 * match (corrupt) or with a token id out of the vocabulary is refused with a message naming why. */
#ifndef SASP_SLOT_FILE_H
#define SASP_SLOT_FILE_H

#include <stddef.h>
#include "model/model.h"

/* Write the first n positions of kv (NULL when n is 0) and their tokens ids to path, for model m whose
 * identity is digest (64 hex digits): written to path.tmp, then renamed over path. The bytes written,
 * or -1 with err. */
long long sasp_slot_file_write(const char *path, const sasp_model *m, const char *digest, const sasp_kv *kv,
                               const int *ids, int n, char *err, size_t errlen);

/* Read the slot file at path for model m (identity digest): *kv (its len the tokens; NULL when the
 * file holds none) and *ids, the caller's to free; *bytes the file's size. 0, or -1 with err. */
int sasp_slot_file_read(const char *path, const sasp_model *m, const char *digest, sasp_kv **kv, int **ids,
                        long long *bytes, char *err, size_t errlen);

#endif
