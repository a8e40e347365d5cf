// pn_json: reading JSON files that come from the internet (config.json, tokenizer files, indexes) with
// jansson, the one way every module does it.
//
// - Only regular files are read (pn_read_file): a FIFO where a config should be is an error, not a hang.
// - Integers too big for 64 bits are read as reals instead of failing the whole file: transformers writes
//   `"model_max_length": 1000000000000000019884624838656` (int(1e30)) into tokenizer_config.json, and
//   jansson refuses it as "too big integer". Only such literals change; every other integer stays an
//   integer, so json_is_integer() checks keep their meaning.
// - Duplicate keys are refused (JSON_REJECT_DUPLICATES), as every file of the project is read.
// - Errors name the file, line and column: "<path>:<line>:<col>: invalid JSON: <jansson's text>".
#ifndef PN_JSON_H
#define PN_JSON_H

#include <jansson.h>

// The parsed file, or NULL with the error set. Free with json_decref.
json_t *pn_json_load(const char *path);

// The same for bytes in memory; `what` names them in errors.
json_t *pn_json_loadb(const char *buf, size_t len, const char *what);

// Typed getters for config files: the key is optional (absent or null: *out keeps its value, 0 returned)
// unless `required`; a value of another type or out of range is an error naming `path` and the key.
// Integers: in [minval, 2^30].
int pn_json_int(const char *path, json_t *o, const char *key, int *out, int required, int minval);
int pn_json_num(const char *path, json_t *o, const char *key, double *out);
// A number that may also be written as a string ("1e-5": what Python's float() accepts, blanks around it).
int pn_json_num_or_string(const char *path, json_t *o, const char *key, double *out);
int pn_json_bool(const char *path, json_t *o, const char *key, int *out);
int pn_json_string(const char *path, json_t *o, const char *key, const char **out);
// A float as the shortest decimal that reads back as the same float (1e-06, not 9.9999999747524271e-07).
json_t *pn_json_float(float x);
// A token id (or the first of a list, every one checked) in [0, vocab).
int pn_json_token_id(const char *path, json_t *o, const char *key, int vocab, int *out);
// x positive as a float (1e-300 is 0 as a float, refused) and at most hi; `in` prefixes the key in messages.
int pn_json_pos_float(const char *path, const char *in, const char *key, double x, double hi);
// Every key of o is one of `known` (NULL-terminated); `why` ends the message (may be NULL).
int pn_json_known_keys(const char *path, const char *in, json_t *o, const char **known, const char *why);
// o[key], when present, is one of the strings `choices`.
int pn_json_choice(const char *path, const char *in, json_t *o, const char *key, const char **choices);

#endif
