/* constrain.h: constrained decoding. Before a sequence samples, the tokens it may not generate next
 * get a logit of -inf, so that whatever the model prefers the output keeps to the constraint:
 *
 *  - token healing: a text prompt that ends inside what training would have written as one token
 *    ("\n" before indentation, "    ", half an identifier) has its last token backed off
 *    (sasp_heal_prompt) and the first generated token(s) must reproduce the removed bytes: each one
 *    either starts with what is left of them or is a prefix of it;
 *  - JSON: the output must be a document of a schema (json_schema.h), finished within the tokens the
 *    sequence may still generate, and the sequence ends as soon as the document is complete.
 *
 * A sasp_token_table holds what the masks need to know about each token of a vocabulary, built once
 * per tokenizer. */
#ifndef SASP_CONSTRAIN_H
#define SASP_CONSTRAIN_H

#include <stddef.h>
#include "text/json_schema.h"
#include "text/tokenizer.h"

typedef struct sasp_token_table sasp_token_table;

sasp_token_table *sasp_token_table_new(const sasp_tokenizer *tok);
void sasp_token_table_free(sasp_token_table *t);

typedef struct sasp_constraint sasp_constraint;

/* Token healing of a prompt of n ids (n >= 2, the last one a normal token): returns how many tokens
 * to keep (n - 1), and the constraint that makes the generation start with the last token's bytes;
 * returns n and sets *out NULL when the prompt is not healed (too short, or it ends with a special
 * token). NULL *out with a return of -1 when out of memory. */
int sasp_heal_prompt(const sasp_tokenizer *tok, const int *ids, int n, sasp_constraint **out);
/* The constraint of token healing for bytes backed off a prompt by its caller (fill in the middle:
 * the token before the cursor, inside the prompt rather than at its end): the generation starts with
 * them. NULL when out of memory or len is 0. */
sasp_constraint *sasp_constraint_heal(const char *bytes, size_t len);

/* A JSON constraint for the schema (which must outlive it). NULL when out of memory. */
sasp_constraint *sasp_constraint_json(const sasp_json_schema *schema);
void sasp_constraint_free(sasp_constraint *c);

/* Set logits[id] = -inf for every token that may not come next, when at most tokens_left tokens
 * (this one included) may still be generated. eos is the end-of-sequence id, allowed only where the
 * output may end. Returns the number of tokens still allowed (0: none; the caller ends the sequence). */
int sasp_constraint_mask(const sasp_constraint *c, const sasp_token_table *t, float *logits, int tokens_left, int eos);

/* Take the token the sequence sampled. Returns 1 when the output is complete (the sequence must end
 * now: a JSON document closed), 0 otherwise. */
int sasp_constraint_accept(sasp_constraint *c, const sasp_token_table *t, int id);

/* Whether the constraint still restricts anything (token healing is spent once its bytes are
 * reproduced; then the caller may free it). */
int sasp_constraint_active(const sasp_constraint *c);

#endif
