// fuzz_cli_generate: postnas-generate's command line. The input is argv (NUL-separated); the tool's own
// source is compiled in without its main (PN_GENERATE_NO_MAIN) so parse_args and parse_ids, which never
// exit or open a file, run in-process on every input.
#define PN_GENERATE_NO_MAIN
#include "../../src/tools/postnas-generate.c"

#include "fuzz_common.h"

__attribute__((used)) static int (*const keep_run)(int, char **) = run; // the tool's run(), not called here

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *argv[64], *buf;
    int argc = fz_argv(data, size, "postnas-generate", argv, 64, &buf);
    gen_args a;
    if (parse_args(argc, argv, &a) == 0 && !a.help) {
        const pn_sample_args *sa = &a.sampling;
        if (a.max_new < 0 || a.max_new > MAX_NEW_TOKENS || !(sa->temperature >= 0) || sa->top_k < 0 ||
            !(sa->top_p >= 0 && sa->top_p <= 1))
            abort(); // range-checked
        int32_t *ids = NULL;
        int n = 0;
        if (a.ids_s && parse_ids(a.ids_s, &ids, &n) == 0)
            for (int i = 0; i < n; i++)
                if (ids[i] < 0) abort();
        free(ids);
    }
    if (strchr(pn_last_error(), '\n')) abort(); // every message is one line
    free(buf);
    pn_clear_error();
    return 0;
}
