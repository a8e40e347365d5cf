// postnas-train: trains a model from a YAML config (train/pn_trainer.h says what a run does).
//
//   postnas-train --config X.yaml [--set key=value ...] [--resume | --overwrite] [--progress|--no-progress]
//   postnas-train --print-schema [markdown]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/pn_common.h"
#include "pn_dist.h"
#include "pn_trainer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: postnas-train --config FILE.yaml [--set key=value]... [--resume | --overwrite]\n"
               "                     [--progress | --no-progress] [--check]\n"
               "       postnas-train --print-schema [yaml|markdown]\n"
               "Trains as the config says (the keys: --print-schema). --set overrides a key (the value is YAML:\n"
               "--set data.train=[a.h5,b.h5]). --resume continues from the newest complete checkpoint in\n"
               "out_dir/checkpoints with the same config; --overwrite starts over in an out_dir that holds a run.\n"
               "--check: only check the config (postnas-sweep checks every trial first).\n"
               "SIGINT/SIGTERM write a checkpoint and stop (exit 130).\n");
}

int main(int argc, char **argv) {
    const char *config = NULL, *schema = NULL;
    const char **sets = pn_calloc((size_t)argc, sizeof(char *));
    int nsets = 0;
    pn_run_opts o = {.resume = 0, .progress = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config") && i + 1 < argc) config = argv[++i];
        else if (!strncmp(a, "--config=", 9)) config = a + 9;
        else if (!strcmp(a, "--set") && i + 1 < argc) sets[nsets++] = argv[++i];
        else if (!strncmp(a, "--set=", 6)) sets[nsets++] = a + 6;
        else if (!strcmp(a, "--resume")) o.resume = 1;
        else if (!strcmp(a, "--overwrite")) o.overwrite = 1;
        else if (!strcmp(a, "--progress")) o.progress = 1;
        else if (!strcmp(a, "--no-progress")) o.progress = 0;
        else if (!strcmp(a, "--check")) o.check = 1;
        else if (!strcmp(a, "--print-schema")) schema = i + 1 < argc && argv[i + 1][0] != '-' ? argv[++i] : "markdown";
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(sets);
            return 0;
        } else {
            char esc[128];
            fprintf(stderr, "postnas-train: error: unknown argument '%s'\n", pn_escape(a, strlen(a), esc, sizeof esc));
            usage(stderr);
            free(sets);
            return 1;
        }
    }
    if (schema) {
        free(sets);
        if (!strcmp(schema, "markdown")) pn_cfg_write_markdown(pn_train_schema, pn_train_schema_n, stdout);
        else if (!strcmp(schema, "yaml")) {
            // the defaults as a config (required keys show as empty)
            pn_train_cfg *d = pn_calloc(1, sizeof *d);
            pn_cfg_write_yaml(pn_train_schema, pn_train_schema_n, d, stdout);
            free(d);
        } else {
            fprintf(stderr, "postnas-train: error: --print-schema takes markdown or yaml, not '%s'\n", schema);
            return 1;
        }
        return 0;
    }
    if (o.resume && o.overwrite) {
        fprintf(stderr, "postnas-train: error: --resume and --overwrite exclude each other\n");
        free(sets);
        return 1;
    }
    if (!config) {
        fprintf(stderr, "postnas-train: error: --config FILE.yaml is required\n");
        usage(stderr);
        free(sets);
        return 1;
    }
    pn_train_cfg *cfg = pn_calloc(1, sizeof *cfg);
    int rc = pn_cfg_load(pn_train_schema, pn_train_schema_n, cfg, config, sets, nsets);
    if (!rc) rc = pn_train_run(cfg, config, &o);
    if (rc < 0) {
        // Here only errors found before the ranks joined (the config, the launcher's world): every rank of a
        // job finds the same one, so rank 0's line is the job's; the others wait 3 s first, in which the
        // launcher ends them when rank 0 exits (mpirun does), and print only if still running: an error that
        // is theirs alone (a file missing on their node) is still shown. Errors after joining are printed
        // with their rank by pn_train_run.
        pn_dist env;
        if (pn_dist_env(&env) == 0 && env.rank > 0) sleep(3);
        fprintf(stderr, "postnas-train: error: %s\n", pn_last_error());
    }
    free(cfg);
    free(sets);
    return rc < 0 ? 1 : rc > 0 ? 130 : 0;
}
