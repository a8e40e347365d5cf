// fuzz_cli_data: postnas-data's command lines (tokenize, inspect, synth). The input is argv
// (NUL-separated); the tool's source is compiled in without its main (PN_DATA_NO_MAIN) and its parse
// functions, which never exit or touch a file, run in-process.
#define PN_DATA_NO_MAIN
#include "../../data/postnas-data.c"

#include "fuzz_common.h"

// The tools' run functions, compiled in but not called here.
__attribute__((used)) static int (*const keep_tokenize)(int, char **, options *) = tokenize_main;
__attribute__((used)) static int (*const keep_inspect)(int, char **) = inspect_isolated;
__attribute__((used)) static int (*const keep_synth)(int, char **) = synth_main;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *argv[64], *buf;
    int argc = fz_argv(data, size, "postnas-data", argv, 64, &buf), help = 0;
    if (argc >= 2) {
        if (!strcmp(argv[1], "tokenize")) {
            options o = {0};
            if (tokenize_parse(argc, argv, &o, &help) == 0 && !help &&
                (o.threads < 1 || o.threads > 1024 || o.shard_tokens < 1 || !o.tokenizer || !o.out))
                abort();
            for (int i = 0; i < o.n_files; i++) free(o.files[i]);
            free(o.files);
        } else if (!strcmp(argv[1], "inspect")) {
            inspect_args ia;
            if (inspect_parse(argc, argv, &ia, &help) == 0 && !help && (!ia.path || ia.sample > (1u << 24))) abort();
        } else {
            synth_args sa;
            if (synth_parse(argc, argv, &sa, &help) == 0 && !help && (sa.n < 1 || sa.entities > 20000)) abort();
        }
    }
    if (strchr(pn_last_error(), '\n')) abort(); // every message is one line
    free(buf);
    pn_clear_error();
    return 0;
}
