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

#endif
