// postnas-sweep: runs the trials of a config's sweep: section (src/pn_cfg.h) — the grid's every combination
// times the zipped lists — each as its own run of postnas-train or postnas-search in out_dir/trial-NNN, and
// gathers a results table.
//
//   postnas-sweep --config X.yaml [--set key=value ...] [--dry-run] [--retry N] [--no-progress]
//
// Every trial's config is checked first (the tool's --check), so a bad value stops the sweep before anything
// runs. A finished trial (out_dir/trial-NNN/.sweep-done) is skipped when the sweep runs again; an interrupted
// training trial resumes from its newest checkpoint; a failed trial is retried --retry times (default 1),
// then reported. Each trial's output goes to out_dir/trial-NNN.log. The table (out_dir/sweep.csv and
// sweep.md): trial, the swept values, status, and the metrics (sweep.metrics; default: train the last
// metrics.jsonl line's loss, search the searched subnet's scores and its layer types). Exit 1 when a trial
// failed.
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/pn_cfg.h"
#include "../src/pn_common.h"
#include "../src/pn_json.h"

extern char **environ;

static void usage(FILE *f) {
    fprintf(f, "usage: postnas-sweep --config X.yaml [--set key=value ...] [--dry-run] [--retry N] [--no-progress]\n"
               "Runs every trial of the config's sweep: section (command: train|search; grid: every combination of\n"
               "its lists; zip: lists varied together; metrics: the table's columns) in out_dir/trial-NNN, skipping\n"
               "finished ones, and writes out_dir/sweep.csv and sweep.md. --dry-run lists the trials.\n");
}

// The tool beside this program (postnas-train, postnas-search).
static char *tool_path(const char *argv0, const char *tool) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) snprintf(self, sizeof self, "%s", argv0), n = (ssize_t)strlen(self);
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    else snprintf(self, sizeof self, ".");
    return pn_path_join(self, tool);
}

// Runs argv with stdout and stderr appended to log (NULL: /dev/null). Returns the exit status (128 + signal
// when killed, -1 when it could not start).
static int run_cmd(char *const *argv, const char *log) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    const int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) return -1;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

// The last line of a file (the tool's error), escaped onto one line.
static void last_line(const char *path, char *buf, size_t cap) {
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (line[0] != '\n') pn_escape(line, strcspn(line, "\n"), buf, cap);
    fclose(f);
}

typedef struct trial {
    int idx, n_ov;
    const char *keys[2 * PN_CFG_SWEEP_MAX_AXES], *values[2 * PN_CFG_SWEEP_MAX_AXES];
    char dir[1200], status[16], error[512];
    json_t *metrics; // name -> value
} trial;

// argv for a trial: tool --config X [--set base...] --set out_dir=DIR [--set key=value...] --no-progress [extra]
static char **trial_argv(const char *tool, const char *config, const char *const *sets, int n_sets, const trial *t,
                         const char *extra) {
    char **argv = pn_calloc((size_t)(8 + 2 * (n_sets + t->n_ov)), sizeof(char *));
    int a = 0;
    argv[a++] = pn_strdup(tool), argv[a++] = pn_strdup("--config"), argv[a++] = pn_strdup(config);
    for (int i = 0; i < n_sets; i++) argv[a++] = pn_strdup("--set"), argv[a++] = pn_strdup(sets[i]);
    char buf[2048];
    snprintf(buf, sizeof buf, "out_dir=%s", t->dir);
    argv[a++] = pn_strdup("--set"), argv[a++] = pn_strdup(buf);
    for (int i = 0; i < t->n_ov; i++) {
        const size_t len = strlen(t->keys[i]) + strlen(t->values[i]) + 2;
        char *s = pn_malloc(len);
        snprintf(s, len, "%s=%s", t->keys[i], t->values[i]);
        argv[a++] = pn_strdup("--set"), argv[a++] = s;
    }
    argv[a++] = pn_strdup("--no-progress");
    if (extra) argv[a++] = pn_strdup(extra);
    return argv;
}

static void free_argv(char **argv) {
    for (int i = 0; argv[i]; i++) free(argv[i]);
    free(argv);
}

static int has_checkpoint(const char *dir) {
    char *p = pn_path_join(dir, "latest");
    struct stat sb;
    const int r = stat(p, &sb) == 0;
    free(p);
    return r;
}

// The trial's metrics: train: the last metrics.jsonl line (sweep.metrics, default loss); search:
// placement.json's searched scores (sweep.metrics, default all) and its layer types.
static void gather(const pn_cfg_sweep *sw, trial *t) {
    t->metrics = json_object();
    if (!strcmp(sw->command, "train")) {
        char *p = pn_path_join(t->dir, "metrics.jsonl");
        FILE *f = fopen(p, "r");
        free(p);
        if (!f) return;
        char line[8192], last[8192] = "";
        while (fgets(line, sizeof line, f))
            if (line[0] == '{') memcpy(last, line, sizeof last);
        fclose(f);
        json_t *j = json_loads(last, 0, NULL);
        if (!j) return;
        const int n = sw->n_metrics ? sw->n_metrics : 1;
        for (int i = 0; i < n; i++) {
            const char *m = sw->n_metrics ? sw->metrics[i] : "loss";
            json_t *v = json_object_get(j, m);
            json_object_set_new(t->metrics, m, v && json_is_number(v) ? json_real(json_number_value(v)) : json_null());
        }
        json_decref(j);
    } else {
        char *p = pn_path_join(t->dir, "placement.json");
        json_t *j = json_load_file(p, 0, NULL);
        free(p);
        if (!j) return;
        json_t *sc = json_object_get(json_object_get(j, "scores"), "searched");
        const char *k;
        json_t *v;
        json_object_foreach(sc, k, v) {
            int want = !sw->n_metrics;
            for (int i = 0; i < sw->n_metrics; i++) want |= !strcmp(sw->metrics[i], k);
            if (want) json_object_set(t->metrics, k, v);
        }
        json_t *types = json_object_get(j, "layer_types");
        if (json_is_array(types)) {
            char buf[4096] = "";
            size_t i;
            json_t *x;
            json_array_foreach(types, i, x) {
                const size_t l = strlen(buf);
                snprintf(buf + l, sizeof buf - l, "%s%s", i ? "," : "", json_string_value(x) ? json_string_value(x) : "?");
            }
            json_object_set_new(t->metrics, "layer_types", json_string(buf));
        }
        json_decref(j);
    }
}

// CSV field: quoted when it holds a comma, quote or newline.
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void value_text(json_t *v, char *buf, size_t cap) {
    if (json_is_real(v)) snprintf(buf, cap, "%.6g", json_real_value(v));
    else if (json_is_integer(v)) snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v)) snprintf(buf, cap, "%s", json_string_value(v));
    else snprintf(buf, cap, "%s", "");
}

static int write_table(const char *root, const pn_cfg_sweep *sw, trial *tr, int n) {
    // columns: the swept keys, status, then every metric name any trial has (first-seen order)
    json_t *cols = json_array();
    for (int i = 0; i < n; i++) {
        const char *k;
        json_t *v;
        json_object_foreach(tr[i].metrics, k, v) {
            int seen = 0;
            for (size_t c = 0; c < json_array_size(cols) && !seen; c++) seen = !strcmp(json_string_value(json_array_get(cols, c)), k);
            if (!seen) json_array_append_new(cols, json_string(k));
        }
    }
    int rc = 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        char *p = pn_path_join(root, pass ? "sweep.md" : "sweep.csv");
        pn_atomic_file af;
        rc = pn_atomic_open(&af, p);
        free(p);
        if (rc) break;
        FILE *f = af.f;
        const char *sep = pass ? " | " : ",";
        if (pass) fputs("| ", f);
        fputs("trial", f);
        for (int k = 0; k < tr[0].n_ov; k++) fputs(sep, f), pass ? fputs(tr[0].keys[k], f) : csv_field(f, tr[0].keys[k]);
        fprintf(f, "%sstatus", sep);
        for (size_t c = 0; c < json_array_size(cols); c++) fputs(sep, f), fputs(json_string_value(json_array_get(cols, c)), f);
        if (pass) {
            fputs(" |\n|", f);
            for (size_t c = 0; c < 2 + (size_t)tr[0].n_ov + json_array_size(cols); c++) fputs("---|", f);
        }
        fputs("\n", f);
        for (int i = 0; i < n; i++) {
            if (pass) fputs("| ", f);
            fprintf(f, "%d", tr[i].idx);
            for (int k = 0; k < tr[i].n_ov; k++) fputs(sep, f), pass ? fputs(tr[i].values[k], f) : csv_field(f, tr[i].values[k]);
            fputs(sep, f);
            fputs(tr[i].status, f);
            for (size_t c = 0; c < json_array_size(cols); c++) {
                char buf[4096];
                value_text(json_object_get(tr[i].metrics, json_string_value(json_array_get(cols, c))), buf, sizeof buf);
                fputs(sep, f);
                pass ? fputs(buf, f) : csv_field(f, buf);
            }
            fputs(pass ? " |\n" : "\n", f);
        }
        if (pass) {
            fprintf(f, "\n%s sweep, %d trials.", sw->command, n);
            for (int i = 0; i < n; i++)
                if (tr[i].error[0]) fprintf(f, "\n\ntrial %d failed: %s (trial-%03d.log)", tr[i].idx, tr[i].error, tr[i].idx);
            fputs("\n", f);
        }
        rc = pn_atomic_commit(&af);
    }
    json_decref(cols);
    return rc;
}

int main(int argc, char **argv) {
    const char *config = NULL;
    const char **sets = pn_calloc((size_t)argc, sizeof(char *));
    int n_sets = 0, dry = 0, retry = 1, progress = 1;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            usage(stdout);
            free(sets);
            return 0;
        } else if (!strcmp(k, "--dry-run")) dry = 1;
        else if (!strcmp(k, "--no-progress")) progress = 0;
        else if (!strcmp(k, "--config") && v) config = v, i++;
        else if (!strcmp(k, "--set") && v) sets[n_sets++] = v, i++;
        else if (!strcmp(k, "--retry") && v) {
            if (pn_parse_int("--retry", v, 0, 100, &retry)) {
                fprintf(stderr, "postnas-sweep: error: %s\n", pn_last_error());
                free(sets);
                return 1;
            }
            i++;
        } else {
            char esc[128];
            fprintf(stderr, "postnas-sweep: error: unknown argument '%s' (postnas-sweep --help)\n",
                    pn_escape(k, strlen(k), esc, sizeof esc));
            free(sets);
            return 1;
        }
    }
    if (!config) {
        fprintf(stderr, "postnas-sweep: error: --config X.yaml is required (postnas-sweep --help)\n");
        free(sets);
        return 1;
    }
    pn_cfg_sweep sw;
    if (pn_cfg_sweep_load(config, &sw)) {
        fprintf(stderr, "postnas-sweep: error: %s\n", pn_last_error());
        free(sets);
        return 1;
    }
    // out_dir: the config's, or a --set out_dir=
    char root[1024];
    snprintf(root, sizeof root, "%s", sw.out_dir);
    for (int i = 0; i < n_sets; i++)
        if (!strncmp(sets[i], "out_dir=", 8)) snprintf(root, sizeof root, "%s", sets[i] + 8);
    int rc = 0;
    if (!root[0]) rc = pn_errorf("%s: no out_dir (the trials go in out_dir/trial-NNN)", config);
    char *tool = tool_path(argv[0], !strcmp(sw.command, "train") ? "postnas-train" : "postnas-search");
    if (!rc && access(tool, X_OK)) rc = pn_errorf("%s: not found beside postnas-sweep", tool);
    const int n = pn_cfg_sweep_trials(&sw);
    trial *tr = pn_calloc((size_t)n, sizeof *tr);
    for (int i = 0; i < n; i++) {
        tr[i].idx = i;
        tr[i].n_ov = pn_cfg_sweep_trial(&sw, i, tr[i].keys, tr[i].values);
        snprintf(tr[i].dir, sizeof tr[i].dir, "%s/trial-%03d", root, i);
        snprintf(tr[i].status, sizeof tr[i].status, "pending");
    }
    if (!rc && (dry || progress)) {
        printf("%s sweep: %d trials in %s\n", sw.command, n, root);
        for (int i = 0; i < n; i++) {
            printf("  trial-%03d:", i);
            for (int k = 0; k < tr[i].n_ov; k++) printf(" %s=%s", tr[i].keys[k], tr[i].values[k]);
            printf("\n");
        }
        fflush(stdout);
    }
    // every trial's config checked before any runs
    for (int i = 0; i < n && !rc; i++) {
        char **av = trial_argv(tool, config, sets, n_sets, &tr[i], "--check");
        char tmp[] = "/tmp/pn_sweep_check.XXXXXX";
        const int fd = mkstemp(tmp);
        if (fd >= 0) close(fd);
        const int st = run_cmd(av, fd >= 0 ? tmp : NULL);
        free_argv(av);
        if (st) {
            char msg[512];
            last_line(tmp, msg, sizeof msg);
            rc = pn_errorf("trial %d's config: %s", i, msg[0] ? msg : "rejected");
        }
        unlink(tmp);
    }
    struct stat sb;
    if (!rc && !dry && stat(root, &sb) && mkdir(root, 0777)) rc = pn_errorf("%s: cannot create: %s", root, strerror(errno));
    int failed = 0;
    const double t0 = pn_now();
    for (int i = 0; i < n && !rc && !dry; i++) {
        char *done = pn_path_join(tr[i].dir, ".sweep-done"), log[1300];
        snprintf(log, sizeof log, "%s/trial-%03d.log", root, i);
        if (!stat(done, &sb)) {
            snprintf(tr[i].status, sizeof tr[i].status, "done");
            if (progress) printf("trial-%03d: finished before, skipped\n", i);
        } else {
            int st = -1;
            for (int attempt = 0; attempt <= retry && st; attempt++) {
                // a training trial continues from its newest checkpoint, else starts over in its folder
                const char *extra = !strcmp(sw.command, "train") ? (has_checkpoint(tr[i].dir) ? "--resume" : "--overwrite") : NULL;
                char **av = trial_argv(tool, config, sets, n_sets, &tr[i], extra);
                if (progress) {
                    printf("trial-%03d: running%s (log %s) ... ", i, attempt ? " again" : "", log);
                    fflush(stdout);
                }
                const double ts = pn_now();
                st = run_cmd(av, log);
                free_argv(av);
                if (progress) printf("%s in %.1f s\n", st ? "failed" : "done", pn_now() - ts);
            }
            if (!st) {
                FILE *f = fopen(done, "w");
                if (f) fclose(f);
                snprintf(tr[i].status, sizeof tr[i].status, "done");
            } else {
                snprintf(tr[i].status, sizeof tr[i].status, "failed");
                last_line(log, tr[i].error, sizeof tr[i].error);
                failed++;
            }
        }
        free(done);
        gather(&sw, &tr[i]);
    }
    if (!rc && !dry) rc = write_table(root, &sw, tr, n);
    if (!rc && !dry && progress)
        printf("%d trials (%d failed) in %.1f s: %s/sweep.csv, %s/sweep.md\n", n, failed, pn_now() - t0, root, root);
    for (int i = 0; i < n; i++)
        if (tr[i].metrics) json_decref(tr[i].metrics);
    free(tr), free(tool), free(sets);
    pn_cfg_sweep_free(&sw);
    if (rc) {
        fprintf(stderr, "postnas-sweep: error: %s\n", pn_last_error());
        return 1;
    }
    if (failed) {
        fprintf(stderr, "postnas-sweep: error: %d of %d trials failed (see %s/sweep.md)\n", failed, n, root);
        return 1;
    }
    return 0;
}
