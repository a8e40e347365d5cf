// postnas-data: corpus -> HDF5 token shards ("tokenize"), a look inside one shard ("inspect"), and the
// built-in synthetic tasks as JSONL ("synth").
//
// tokenize reads documents in input order on the main thread and hands them, in batches, to worker
// threads that run the tokenizer; finished batches are written strictly in the order they were read,
// so the shards are identical whatever --threads is. Only the main thread calls HDF5. Each shard is
// written atomically (pn_shard), and if the run fails or is interrupted every shard it wrote is removed
// again, so an output folder holds either a whole corpus or nothing from this run.
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "../src/pn_common.h"
#include "pn_shard.h"
#include "pn_synth.h"
#include "pn_tokenizer.h"

// A batch closes at this much text or this many documents: small enough that threads stay busy and
// memory stays low ((2 * threads + 2) batches in flight), large enough that locking is noise.
#define BATCH_BYTES ((size_t)256 << 10)
#define BATCH_DOCS 4096
// Bad JSONL lines are all counted, but only the first few are printed.
#define BAD_LINES_SHOWN 20

static void usage(FILE *f) {
    fprintf(f,
            "usage: postnas-data tokenize --tokenizer DIR (--text FILE... | --jsonl FILE... --field NAME | --dir DIR)\n"
            "                             --out OUTDIR [--shard-tokens N] [--threads N] [--on-bad-line skip|fail]\n"
            "                             [--progress]\n"
            "       postnas-data inspect FILE.h5 [--tokenizer DIR] [--sample N]\n"
            "       postnas-data synth --task mqar|recall|passkey|copy|facts_mc|facts|corpus|repeat --n N\n"
            "                          --out FILE.jsonl [--seed S] [--first K] [--entities N] [--format items|text]\n"
            "                          [--pairs N] [--queries N] [--filler N] [--length N]\n"
            "\n"
            "tokenize  writes OUTDIR/shard-00000.h5, ...: every input file (--text, or every regular file below\n"
            "          --dir, sorted) or every JSONL line (its string field NAME) is one document, followed by\n"
            "          the tokenizer's eos. --shard-tokens (default 100M) caps a shard's tokens (a larger\n"
            "          document gets a shard of its own); --threads defaults to the number of cores.\n"
            "inspect   prints a shard's attributes, sizes and document length statistics, checks every id\n"
            "          against the vocabulary and decodes the first --sample tokens (default 64).\n"
            "synth     writes items --first .. --first+N-1 of a built-in synthetic task as JSONL with\n"
            "          lm-evaluation-harness field names ({context, answer}, {query, choices, gold}, or {text}\n"
            "          for the facts and corpus documents, which come from a world of --entities made from\n"
            "          --seed, and for repeat's random strings repeated after a short gap). --format text writes\n"
            "          every item as the training document a corpus holds ({text}: the prompt and its answer).\n"
            "          Deterministic: the same seed and index give the same item anywhere. The sizes default to\n"
            "          the demo's (and postnas-eval's synth_* tasks'):\n"
            "          mqar and recall --pairs 8 key-value pairs and --queries 4 questions (the last one is the\n"
            "          item's answer; recall's keys and values are one character each), passkey --filler 8\n"
            "          sentences, copy --length 16 letters.\n");
}

// ---------------------------------------------------------------------------------------------------
// argument helpers

// Non-negative integer with an optional K/M/G/T suffix (powers of 1000: "100M" = 100,000,000). Strict:
// digits only (no blanks, signs or empty string), and a value past `hi` is an error, never a wrap.
static int parse_count(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    size_t n = strlen(s);
    uint64_t mult = 1;
    if (n > 1 && s[n - 1] > '9') {
        switch (s[n - 1]) {
        case 'k': case 'K': mult = 1000ull; break;
        case 'm': case 'M': mult = 1000000ull; break;
        case 'g': case 'G': mult = 1000000000ull; break;
        case 't': case 'T': mult = 1000000000000ull; break;
        default: mult = 0; break;
        }
        n--;
    }
    char digits[32], want[96];
    uint64_t v = 0;
    int ok = mult != 0 && n > 0 && n < sizeof digits;
    if (ok) {
        memcpy(digits, s, n);
        digits[n] = 0;
        ok = pn_parse_u64(opt, digits, 0, UINT64_MAX, &v) == 0 && v <= hi / mult && v * mult >= lo && v * mult <= hi;
    }
    if (!ok) {
        snprintf(want, sizeof want, "a count in [%llu, %llu]", (unsigned long long)lo, (unsigned long long)hi);
        char q[256];
        return pn_errorf("%s: '%s' is not %s", opt, pn_escape(s, strlen(s), q, sizeof q), want);
    }
    *out = v * mult;
    return 0;
}

// "1,234,567"
static const char *fmt_count(uint64_t v, char buf[32]) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v), k = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = 0;
    return buf;
}

// "12.3 MB" (powers of 1000, like the rates)
static const char *fmt_bytes(uint64_t v, char buf[32]) {
    const char *units[] = {"B", "kB", "MB", "GB", "TB"};
    double x = (double)v;
    int u = 0;
    while (x >= 1000 && u < 4) {
        x /= 1000;
        u++;
    }
    snprintf(buf, 32, u ? "%.1f %s" : "%.0f %s", x, units[u]);
    return buf;
}

// ---------------------------------------------------------------------------------------------------
// progress on stderr

static struct {
    int on, tty, drawn;
    double start, last;
    uint64_t total, done; // input bytes
} prog;

static void fmt_time(double s, char buf[32]) {
    long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;
    if (t >= 3600) snprintf(buf, 32, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, 32, "%ld:%02ld", t / 60, t % 60);
}

// Redraws the bar at most 4 times a second (always when forced).
static void progress_draw(uint64_t tokens, int shards, int force) {
    if (!prog.on) return;
    double now = pn_now();
    if (!force && now - prog.last < 0.25) return;
    prog.last = now;
    double el = now - prog.start, rate = el > 0 ? 1e-6 * (double)prog.done / el : 0;
    double left = prog.total > prog.done ? 1e-6 * (double)(prog.total - prog.done) : 0;
    char done[32], total[32], eta[32], tok[32];
    fmt_time(rate > 0 ? left / rate : 0, eta);
    fprintf(stderr, "\r%s / %s (%.1f%%)  %.1f MB/s  ETA %s  %s tokens  %d shard(s)%s", fmt_bytes(prog.done, done),
            fmt_bytes(prog.total, total), prog.total > 0 ? 100.0 * (double)prog.done / (double)prog.total : 100.0,
            rate, eta, fmt_count(tokens, tok), shards, prog.tty ? "\033[K" : "");
    fflush(stderr);
    prog.drawn = 1;
}

// Ends the bar's line before anything else is printed on stderr.
static void progress_break(void) {
    if (!prog.drawn) return;
    fputs(prog.tty ? "\r\033[K" : "\n", stderr);
    prog.drawn = 0;
}

// ---------------------------------------------------------------------------------------------------
// options and input files

typedef enum { IN_NONE, IN_TEXT, IN_JSONL, IN_DIR } input_kind;

typedef struct options {
    const char *tokenizer, *out, *field, *dir;
    input_kind kind;
    char **files; // input files in order (for --dir: found below dir, sorted); owned
    int n_files;
    uint64_t shard_tokens, total_bytes;
    int threads, bad_fail, progress;
} options;

static void add_file(options *o, const char *path) {
    o->files = pn_realloc(o->files, ((size_t)o->n_files + 1) * sizeof *o->files);
    o->files[o->n_files++] = pn_strdup(path);
}

static options *walk_opts; // nftw has no user pointer
static int walk_err;

static int walk_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)ftw;
    if (type == FTW_DNR || type == FTW_NS) {
        walk_err = pn_errorf("%s: cannot read %s", path, type == FTW_DNR ? "directory" : "file status");
        return 1;
    }
    // Regular files only; FTW_PHYS reports symbolic links as FTW_SL, which are passed over (no loops).
    if (type == FTW_F && S_ISREG(st->st_mode)) add_file(walk_opts, path);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Stats every input up front: a missing file is reported before any shard exists, and the sizes give
// the progress total.
static int collect_inputs(options *o) {
    if (o->kind == IN_DIR) {
        struct stat st;
        if (stat(o->dir, &st) != 0) return pn_errorf("%s: cannot open: %s", o->dir, strerror(errno));
        if (!S_ISDIR(st.st_mode)) return pn_errorf("%s: not a directory", o->dir);
        walk_opts = o;
        walk_err = 0;
        if (nftw(o->dir, walk_one, 32, FTW_PHYS) != 0 && !walk_err)
            return pn_errorf("%s: cannot walk: %s", o->dir, strerror(errno));
        if (walk_err) return -1;
        qsort(o->files, (size_t)o->n_files, sizeof *o->files, cmp_str);
        if (o->n_files == 0) return pn_errorf("%s: no regular files below it", o->dir);
    }
    o->total_bytes = 0;
    for (int i = 0; i < o->n_files; i++) {
        struct stat st;
        if (stat(o->files[i], &st) != 0) return pn_errorf("%s: cannot open: %s", o->files[i], strerror(errno));
        if (S_ISDIR(st.st_mode))
            return pn_errorf("%s: is a directory%s", o->files[i], o->kind == IN_TEXT ? " (use --dir)" : "");
        if (!S_ISREG(st.st_mode)) return pn_errorf("%s: not a regular file", o->files[i]);
        if (access(o->files[i], R_OK) != 0) return pn_errorf("%s: cannot open: %s", o->files[i], strerror(errno));
        o->total_bytes += (uint64_t)st.st_size;
    }
    return 0;
}

// The shards' free-form "source" attribute: what went in, shortened for long file lists.
static char *describe_source(const options *o) {
    size_t cap = 1024, len = 0;
    char *s = pn_malloc(cap);
    if (o->kind == IN_DIR)
        len = (size_t)snprintf(s, cap, "postnas-data: every regular file below %s (%d files)", o->dir, o->n_files);
    else
        len = (size_t)snprintf(s, cap, "postnas-data: %s%s%s%s: ", o->kind == IN_JSONL ? "jsonl" : "text files",
                               o->kind == IN_JSONL ? " field '" : "", o->kind == IN_JSONL ? o->field : "",
                               o->kind == IN_JSONL ? "'" : "");
    for (int i = 0; o->kind != IN_DIR && i < o->n_files && len < cap; i++) {
        if (i == 8) {
            len += (size_t)snprintf(s + len, cap - len, " and %d more", o->n_files - 8);
            break;
        }
        len += (size_t)snprintf(s + len, cap - len, "%s%s", i ? ", " : "", o->files[i]);
    }
    return s;
}

// ---------------------------------------------------------------------------------------------------
// batches: documents in, token ids out

typedef struct batch {
    // filled by the main thread
    char *text; // the documents' bytes, back to back
    size_t text_len, text_cap;
    size_t *doc_start; // n_docs + 1 offsets into text
    int *doc_file;     // for messages: input file index and JSONL line (0 for whole files)
    uint64_t *doc_line;
    int n_docs, cap_docs;
    uint64_t bytes; // input bytes this batch accounts for, skipped lines included
    // filled by a worker
    int32_t *ids; // every document's ids followed by eos
    size_t n_ids, cap_ids;
    size_t *doc_ntok; // ids per document, eos included
    char *error;
    int done;
} batch;

static void batch_reset(batch *b) {
    b->text_len = 0;
    b->n_docs = 0;
    b->bytes = 0;
    b->n_ids = 0;
    free(b->error);
    b->error = NULL;
    b->done = 0;
    if (!b->doc_start) {
        b->cap_docs = 64;
        b->doc_start = pn_malloc(((size_t)b->cap_docs + 1) * sizeof *b->doc_start);
        b->doc_file = pn_malloc((size_t)b->cap_docs * sizeof *b->doc_file);
        b->doc_line = pn_malloc((size_t)b->cap_docs * sizeof *b->doc_line);
        b->doc_ntok = pn_malloc((size_t)b->cap_docs * sizeof *b->doc_ntok);
    }
    b->doc_start[0] = 0;
}

static void batch_free(batch *b) {
    free(b->text);
    free(b->doc_start);
    free(b->doc_file);
    free(b->doc_line);
    free(b->ids);
    free(b->doc_ntok);
    free(b->error);
}

static void batch_reserve_text(batch *b, size_t more) {
    if (b->text_len + more <= b->text_cap) return;
    while (b->text_len + more > b->text_cap) b->text_cap = b->text_cap ? 2 * b->text_cap : BATCH_BYTES;
    b->text = pn_realloc(b->text, b->text_cap);
}

// The document just appended to text ends at text_len.
static void batch_end_doc(batch *b, int file, uint64_t line) {
    if (b->n_docs == b->cap_docs) {
        b->cap_docs *= 2;
        b->doc_start = pn_realloc(b->doc_start, ((size_t)b->cap_docs + 1) * sizeof *b->doc_start);
        b->doc_file = pn_realloc(b->doc_file, (size_t)b->cap_docs * sizeof *b->doc_file);
        b->doc_line = pn_realloc(b->doc_line, (size_t)b->cap_docs * sizeof *b->doc_line);
        b->doc_ntok = pn_realloc(b->doc_ntok, (size_t)b->cap_docs * sizeof *b->doc_ntok);
    }
    b->doc_file[b->n_docs] = file;
    b->doc_line[b->n_docs] = line;
    b->n_docs++;
    b->doc_start[b->n_docs] = b->text_len;
}

// ---------------------------------------------------------------------------------------------------
// reading documents (main thread)

typedef struct reader {
    const options *o;
    int fi;   // next (text) or current (JSONL) file
    FILE *f;  // JSONL: the open file
    uint64_t line;
    char *lbuf;
    size_t lcap;
    uint64_t n_empty, n_bad;
} reader;

// Appends a whole file to the batch text; the bytes go in as they are (invalid UTF-8 included).
static int append_file(batch *b, const char *path) {
    FILE *f = pn_fopen_regular(path); // never blocks on a FIFO
    if (!f) return -1;
    for (;;) {
        batch_reserve_text(b, 1 << 16);
        size_t n = fread(b->text + b->text_len, 1, b->text_cap - b->text_len, f);
        b->text_len += n;
        if (n == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) return pn_errorf("%s: read error", path);
    return 0;
}

// A JSONL line that cannot be used: fatal with --on-bad-line fail, else counted (first few printed).
static int bad_line(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_line(reader *r, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *path = r->o->files[r->fi];
    if (r->o->bad_fail) return pn_errorf("%s:%llu: %s", path, (unsigned long long)r->line, msg);
    r->n_bad++;
    if (r->n_bad <= BAD_LINES_SHOWN) {
        char qp[512], qm[1024]; // one line each, whatever bytes the file name or the parser's text hold
        pn_escape(path, strlen(path), qp, sizeof qp);
        pn_escape(msg, strlen(msg), qm, sizeof qm);
        progress_break();
        fprintf(stderr, "postnas-data: skipped %s:%llu: %s%s\n", qp, (unsigned long long)r->line, qm,
                r->n_bad == BAD_LINES_SHOWN ? " (further bad lines are counted, not shown)" : "");
    }
    return 0;
}

// One JSONL line -> 1 (document appended), 0 (skipped), -1 (fatal).
static int jsonl_line(reader *r, batch *b, const char *line, size_t len) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len == 0) {
        r->n_empty++;
        return 0;
    }
    json_error_t err;
    // JSON_DECODE_ANY so a bare number or string gets "not a JSON object" rather than a parser message;
    // JSON_ALLOW_NUL keeps "\u0000" in the text. jansson refuses invalid UTF-8 (it is not JSON).
    json_t *root = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!root) return bad_line(r, "not valid JSON: %s (column %d)", err.text, err.column);
    int rc;
    json_t *v = json_is_object(root) ? json_object_get(root, r->o->field) : NULL;
    if (!json_is_object(root)) {
        rc = bad_line(r, "not a JSON object");
    } else if (!v) {
        rc = bad_line(r, "no field '%s'", r->o->field);
    } else if (!json_is_string(v)) {
        rc = bad_line(r, "field '%s' is not a string", r->o->field);
    } else if (json_string_length(v) == 0) {
        r->n_empty++;
        rc = 0;
    } else {
        size_t n = json_string_length(v);
        batch_reserve_text(b, n);
        memcpy(b->text + b->text_len, json_string_value(v), n);
        b->text_len += n;
        batch_end_doc(b, r->fi, r->line);
        rc = 1;
    }
    json_decref(root);
    return rc;
}

// Appends the next document to b: 1, or 0 at the end of the input, or -1.
static int reader_next(reader *r, batch *b) {
    const options *o = r->o;
    for (;;) {
        if (r->fi >= o->n_files) return 0;
        const char *path = o->files[r->fi];
        if (o->kind != IN_JSONL) {
            size_t before = b->text_len;
            if (append_file(b, path)) return -1;
            b->bytes += b->text_len - before;
            if (b->text_len == before) {
                r->n_empty++;
                r->fi++;
                continue;
            }
            batch_end_doc(b, r->fi, 0);
            r->fi++;
            return 1;
        }
        if (!r->f) {
            if (!(r->f = pn_fopen_regular(path))) return -1;
            r->line = 0;
        }
        ssize_t got = getline(&r->lbuf, &r->lcap, r->f);
        if (got < 0) {
            int err = ferror(r->f);
            fclose(r->f);
            r->f = NULL;
            if (err) return pn_errorf("%s: read error after line %llu", path, (unsigned long long)r->line);
            r->fi++;
            continue;
        }
        r->line++;
        b->bytes += (uint64_t)got;
        int rc = jsonl_line(r, b, r->lbuf, (size_t)got);
        if (rc != 0) return rc;
    }
}

// Fills b up to BATCH_BYTES / BATCH_DOCS; *eof set when the input ran out.
static int reader_fill(reader *r, batch *b, int *eof) {
    batch_reset(b);
    while (b->text_len < BATCH_BYTES && b->n_docs < BATCH_DOCS) {
        int rc = reader_next(r, b);
        if (rc < 0) return -1;
        if (rc == 0) {
            *eof = 1;
            break;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// tokenizing (worker threads)

typedef struct pipeline {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv; // workers wait for batches; the main thread for finished ones
    batch *slots;
    int n_slots;
    // Batches are numbered in reading order; slot = number % n_slots.
    // next_write <= next_take <= next_read <= next_write + n_slots.
    uint64_t next_read, next_take, next_write;
    int stop;
    const pn_tokenizer *tok;
    int32_t eos;
    const options *o;
} pipeline;

static void tokenize_batch(pipeline *p, batch *b) {
    b->n_ids = 0;
    for (int d = 0; d < b->n_docs; d++) {
        size_t before = b->n_ids, start = b->doc_start[d], len = b->doc_start[d + 1] - start;
        // allow_special = 0: corpus text is text. A literal "<|endoftext|>" inside a document must not
        // become an eos, or the loader would see a document boundary that is not there.
        if (pn_tokenizer_encode(p->tok, b->text + start, len, 0, &b->ids, &b->n_ids, &b->cap_ids)) {
            char where[PN_ERR_MAX + 64];
            const char *path = p->o->files[b->doc_file[d]];
            if (b->doc_line[d])
                snprintf(where, sizeof where, "%s:%llu: cannot tokenize: %s", path, (unsigned long long)b->doc_line[d],
                         pn_last_error());
            else
                snprintf(where, sizeof where, "%s: cannot tokenize: %s", path, pn_last_error());
            b->error = pn_strdup(where);
            return;
        }
        if (b->n_ids == b->cap_ids) {
            b->cap_ids = b->cap_ids ? 2 * b->cap_ids : 1024;
            b->ids = pn_realloc(b->ids, b->cap_ids * sizeof *b->ids);
        }
        b->ids[b->n_ids++] = p->eos;
        b->doc_ntok[d] = b->n_ids - before;
    }
}

static void *worker_main(void *arg) {
    pipeline *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next_take == p->next_read) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop) break;
        batch *b = &p->slots[p->next_take % (uint64_t)p->n_slots];
        p->next_take++;
        pthread_mutex_unlock(&p->mu);
        tokenize_batch(p, b);
        pthread_mutex_lock(&p->mu);
        b->done = 1;
        pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

// ---------------------------------------------------------------------------------------------------
// writing shards (main thread)

typedef struct output {
    const options *o;
    pn_shard_meta meta;
    pn_shard_writer *w; // the shard being filled, or NULL
    char *cur_path;
    char **created; // shards completed by this run
    int n_created;
    int made_dir;
    uint64_t n_docs, n_tokens;
} output;

static int output_close_shard(output *out) {
    if (!out->w) return 0;
    int rc = pn_shard_writer_close(out->w);
    out->w = NULL;
    if (rc) {
        free(out->cur_path);
        out->cur_path = NULL;
        return -1;
    }
    out->created = pn_realloc(out->created, ((size_t)out->n_created + 1) * sizeof *out->created);
    out->created[out->n_created++] = out->cur_path;
    out->cur_path = NULL;
    return 0;
}

static int output_doc(output *out, const uint32_t *ids, size_t n) {
    // Documents are never split: a shard closes before the document that would take it past the cap.
    if (out->w && pn_shard_writer_n_docs(out->w) > 0 && pn_shard_writer_n_tokens(out->w) + n > out->o->shard_tokens)
        if (output_close_shard(out)) return -1;
    if (!out->w) {
        char name[64];
        snprintf(name, sizeof name, "shard-%05d.h5", out->n_created);
        out->cur_path = pn_path_join(out->o->out, name);
        if (!(out->w = pn_shard_writer_open(out->cur_path, &out->meta))) {
            free(out->cur_path);
            out->cur_path = NULL;
            return -1;
        }
    }
    if (pn_shard_writer_add_doc(out->w, ids, n)) return -1;
    out->n_docs++;
    out->n_tokens += n;
    return 0;
}

// Failure: nothing of this run stays behind.
static void output_remove_all(output *out) {
    if (out->w) pn_shard_writer_abort(out->w);
    out->w = NULL;
    for (int i = 0; i < out->n_created; i++) unlink(out->created[i]);
    if (out->made_dir) rmdir(out->o->out);
}

static void output_free(output *out) {
    for (int i = 0; i < out->n_created; i++) free(out->created[i]);
    free(out->created);
    free(out->cur_path);
}

static int write_batch(output *out, batch *b) {
    if (b->error) return pn_errorf("%s", b->error);
    size_t at = 0;
    for (int d = 0; d < b->n_docs; d++) {
        // int32 and uint32 may alias; ids are non-negative and the writer checks them against the vocabulary.
        if (output_doc(out, (const uint32_t *)(const void *)(b->ids + at), b->doc_ntok[d])) return -1;
        at += b->doc_ntok[d];
    }
    return 0;
}

// mkdir -p; *made says whether the last component was created here.
static int make_dirs(const char *path, int *made) {
    *made = 0;
    struct stat st;
    if (stat(path, &st) == 0) return S_ISDIR(st.st_mode) ? 0 : pn_errorf("%s: exists and is not a directory", path);
    char *p = pn_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            pn_errorf("%s: cannot create: %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *s = '/';
    }
    free(p);
    if (mkdir(path, 0755) != 0) return pn_errorf("%s: cannot create: %s", path, strerror(errno));
    *made = 1;
    return 0;
}

// Shards of an earlier run would silently mix with this one's: refuse.
static int check_out_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (!strncmp(e->d_name, "shard-", 6) && n > 3 && !strcmp(e->d_name + n - 3, ".h5")) {
            rc = pn_errorf("%s: already holds %s; remove the old shards or choose another --out", dir, e->d_name);
            break;
        }
    }
    closedir(d);
    return rc;
}

// ---------------------------------------------------------------------------------------------------
// tokenize

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

// The main loop: keep every slot busy, write finished batches in order, redraw progress.
static int run_pipeline(pipeline *p, reader *r, output *out) {
    int rc = 0, eof = 0;
    pthread_mutex_lock(&p->mu);
    while (!rc) {
        batch *w = &p->slots[p->next_write % (uint64_t)p->n_slots];
        if (p->next_write < p->next_read && w->done) {
            pthread_mutex_unlock(&p->mu);
            rc = write_batch(out, w);
            prog.done += w->bytes;
            progress_draw(out->n_tokens, out->n_created + (out->w != NULL), 0);
            pthread_mutex_lock(&p->mu);
            w->done = 0;
            p->next_write++;
            continue;
        }
        if (eof && p->next_write == p->next_read) break;
        if (interrupted) {
            rc = pn_errorf("interrupted");
            break;
        }
        if (!eof && p->next_read - p->next_write < (uint64_t)p->n_slots) {
            // This slot's previous batch has been written, and no worker looks at it until next_read moves.
            batch *b = &p->slots[p->next_read % (uint64_t)p->n_slots];
            pthread_mutex_unlock(&p->mu);
            rc = reader_fill(r, b, &eof);
            pthread_mutex_lock(&p->mu);
            if (rc) break;
            if (b->n_docs > 0) {
                p->next_read++;
                pthread_cond_signal(&p->work_cv);
            } else {
                prog.done += b->bytes; // only skipped lines at the very end
            }
            continue;
        }
        // Wait for a worker, waking now and then for the progress bar and for Ctrl-C.
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 250 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->done_cv, &p->mu, &ts);
        pthread_mutex_unlock(&p->mu);
        progress_draw(out->n_tokens, out->n_created + (out->w != NULL), 0);
        pthread_mutex_lock(&p->mu);
    }
    p->stop = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static int tokenize_run(options *o) {
    if (collect_inputs(o)) return -1;
    pn_tokenizer *tok = pn_tokenizer_load(o->tokenizer);
    if (!tok) return -1;
    int eos = pn_tokenizer_eos_id(tok);
    if (eos < 0) {
        pn_tokenizer_free(tok);
        return pn_errorf("%s: the tokenizer has no eos token to end documents with", o->tokenizer);
    }
    output out = {.o = o};
    out.meta = (pn_shard_meta){.tokenizer = pn_tokenizer_identity(tok), .vocab_size = pn_tokenizer_vocab_size(tok),
                               .eos_id = eos, .format_version = PN_SHARD_FORMAT_VERSION};
    char *source = describe_source(o);
    out.meta.source = source;
    if (make_dirs(o->out, &out.made_dir) || check_out_empty(o->out)) {
        free(source);
        pn_tokenizer_free(tok);
        return -1;
    }

    pipeline p = {.n_slots = 2 * o->threads + 2, .tok = tok, .eos = eos, .o = o};
    p.slots = pn_calloc((size_t)p.n_slots, sizeof *p.slots);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.work_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); // timed waits immune to clock changes
    pthread_cond_init(&p.done_cv, &ca);
    pthread_condattr_destroy(&ca);

    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    prog.on = o->progress || isatty(STDERR_FILENO);
    prog.tty = isatty(STDERR_FILENO);
    prog.start = pn_now();
    prog.total = o->total_bytes;

    pthread_t *th = pn_calloc((size_t)o->threads, sizeof *th);
    int n_started = 0, rc = 0;
    for (; n_started < o->threads; n_started++)
        if (pthread_create(&th[n_started], NULL, worker_main, &p) != 0) {
            rc = pn_errorf("cannot start thread %d of %d", n_started + 1, o->threads);
            break;
        }
    reader r = {.o = o};
    if (!rc) {
        rc = run_pipeline(&p, &r, &out);
    } else {
        pthread_mutex_lock(&p.mu);
        p.stop = 1;
        pthread_cond_broadcast(&p.work_cv);
        pthread_mutex_unlock(&p.mu);
    }
    for (int i = 0; i < n_started; i++) pthread_join(th[i], NULL);
    if (!rc) rc = output_close_shard(&out);
    if (!rc && out.n_docs == 0)
        rc = pn_errorf("no documents in the input (%llu empty, %llu bad lines skipped)", (unsigned long long)r.n_empty,
                       (unsigned long long)r.n_bad);
    progress_draw(out.n_tokens, out.n_created, 1);
    progress_break();
    if (rc) {
        output_remove_all(&out);
        if (interrupted) pn_errorf("interrupted; removed the %d shard(s) this run had written", out.n_created);
    } else {
        double el = pn_now() - prog.start, mb = 1e-6 * (double)o->total_bytes;
        char docs[32], toks[32], bytes[32];
        fprintf(stderr, "postnas-data: %s documents, %s tokens -> %d shard(s) in %s; %s in %.1f s (%.1f MB/s)",
                fmt_count(out.n_docs, docs), fmt_count(out.n_tokens, toks), out.n_created, o->out,
                fmt_bytes(o->total_bytes, bytes), el, el > 0 ? mb / el : 0.0);
        if (r.n_empty || r.n_bad)
            fprintf(stderr, "; skipped %llu empty, %llu bad line(s)", (unsigned long long)r.n_empty,
                    (unsigned long long)r.n_bad);
        fputc('\n', stderr);
    }

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (r.f) fclose(r.f);
    free(r.lbuf);
    free(th);
    for (int i = 0; i < p.n_slots; i++) batch_free(&p.slots[i]);
    free(p.slots);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.work_cv);
    pthread_cond_destroy(&p.done_cv);
    output_free(&out);
    free(source);
    pn_tokenizer_free(tok);
    return rc;
}

// "--opt value" or "--opt=value"; *i moves past what was used.
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (a[n] == '=') return a + n + 1;
    if (*i + 1 >= argc) {
        pn_errorf("%s needs a value", name);
        return NULL;
    }
    return argv[++*i];
}

static int opt_is(const char *arg, const char *name) {
    size_t n = strlen(name);
    return !strncmp(arg, name, n) && (arg[n] == 0 || arg[n] == '=');
}

static int set_kind(options *o, input_kind k, const char *opt) {
    if (o->kind != IN_NONE && o->kind != k) return pn_errorf("%s: give one of --text, --jsonl or --dir", opt);
    o->kind = k;
    return 0;
}

// The command lines are parsed into structs by functions that never exit or touch a file, so they can
// run in a loop (tests/fuzz/fuzz_cli_data.c). Each returns 0 (*help set for -h/--help) or -1.
static int tokenize_parse(int argc, char **argv, options *o, int *help) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = cores > 0 ? (cores > 1024 ? 1024 : (int)cores) : 1;
    o->shard_tokens = 100000000ull;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        uint64_t n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *help = 1;
            return 0;
        } else if (opt_is(a, "--text") || opt_is(a, "--jsonl")) {
            // One or more files: everything up to the next option.
            const char *name = opt_is(a, "--text") ? "--text" : "--jsonl";
            if (set_kind(o, name[2] == 't' ? IN_TEXT : IN_JSONL, name)) return -1;
            if (!(v = opt_value(argc, argv, &i, name))) return -1;
            add_file(o, v);
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) add_file(o, argv[++i]);
        } else if (opt_is(a, "--dir")) {
            if (set_kind(o, IN_DIR, "--dir") || !(o->dir = opt_value(argc, argv, &i, "--dir"))) return -1;
        } else if (opt_is(a, "--tokenizer")) {
            if (!(o->tokenizer = opt_value(argc, argv, &i, "--tokenizer"))) return -1;
        } else if (opt_is(a, "--out")) {
            if (!(o->out = opt_value(argc, argv, &i, "--out"))) return -1;
        } else if (opt_is(a, "--field")) {
            if (!(o->field = opt_value(argc, argv, &i, "--field"))) return -1;
        } else if (opt_is(a, "--shard-tokens")) {
            if (!(v = opt_value(argc, argv, &i, "--shard-tokens")) ||
                parse_count("--shard-tokens", v, 1, (uint64_t)1 << 40, &o->shard_tokens))
                return -1;
        } else if (opt_is(a, "--threads")) {
            if (!(v = opt_value(argc, argv, &i, "--threads")) || parse_count("--threads", v, 1, 1024, &n)) return -1;
            o->threads = (int)n;
        } else if (opt_is(a, "--on-bad-line")) {
            if (!(v = opt_value(argc, argv, &i, "--on-bad-line"))) return -1;
            if (strcmp(v, "skip") && strcmp(v, "fail"))
                return pn_errorf("--on-bad-line: '%s' is neither 'skip' nor 'fail'", v);
            o->bad_fail = !strcmp(v, "fail");
        } else if (!strcmp(a, "--progress")) {
            o->progress = 1;
        } else {
            return pn_errorf("tokenize: unknown argument '%s' (see --help)", a);
        }
    }
    if (!o->tokenizer) return pn_errorf("tokenize: --tokenizer DIR is required");
    if (!o->out) return pn_errorf("tokenize: --out OUTDIR is required");
    if (o->kind == IN_NONE) return pn_errorf("tokenize: no input (--text, --jsonl or --dir)");
    if (o->kind == IN_JSONL && !o->field) return pn_errorf("tokenize: --jsonl needs --field NAME");
    if (o->kind != IN_JSONL && o->field) return pn_errorf("tokenize: --field only applies to --jsonl");
    return 0;
}

static int tokenize_main(int argc, char **argv, options *o) {
    int help = 0;
    if (tokenize_parse(argc, argv, o, &help)) return -1;
    if (help) {
        usage(stdout);
        return 0;
    }
    return tokenize_run(o);
}

// ---------------------------------------------------------------------------------------------------
// inspect

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct inspect_args {
    const char *path, *tok_dir;
    uint64_t sample;
} inspect_args;

static int inspect_parse(int argc, char **argv, inspect_args *ia, int *help) {
    const char *v;
    *ia = (inspect_args){.sample = 64};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *help = 1;
            return 0;
        } else if (opt_is(a, "--tokenizer")) {
            if (!(ia->tok_dir = opt_value(argc, argv, &i, "--tokenizer"))) return -1;
        } else if (opt_is(a, "--sample")) {
            if (!(v = opt_value(argc, argv, &i, "--sample")) || parse_count("--sample", v, 0, 1u << 24, &ia->sample))
                return -1;
        } else if (a[0] == '-' || ia->path) {
            return pn_errorf("inspect: unexpected argument '%s' (see --help)", a);
        } else {
            ia->path = a;
        }
    }
    if (!ia->path) return pn_errorf("inspect: which shard? (postnas-data inspect FILE.h5 --tokenizer DIR)");
    return 0;
}

static int inspect_opened_fd = -1; // inspect_isolated's pipe, in the child

static int inspect_main(int argc, char **argv) {
    inspect_args ia;
    int help = 0;
    if (inspect_parse(argc, argv, &ia, &help)) return -1;
    if (help) {
        usage(stdout);
        return 0;
    }
    const char *path = ia.path, *tok_dir = ia.tok_dir;
    const uint64_t sample = ia.sample;
    // The tokenizer first: a missing folder should not wait for a full scan of the shard.
    pn_tokenizer *tok = NULL;
    if (tok_dir && !(tok = pn_tokenizer_load(tok_dir))) return -1;
    pn_shard *s = pn_shard_open(path, NULL, 0);
    if (inspect_opened_fd >= 0) { // tell inspect_isolated that libhdf5 got through the file's metadata
        if (write(inspect_opened_fd, "o", 1) != 1) {}
        close(inspect_opened_fd);
        inspect_opened_fd = -1;
    }
    if (!s) {
        pn_tokenizer_free(tok);
        return -1;
    }
    const pn_shard_meta *m = pn_shard_get_meta(s);
    uint64_t n_tokens = pn_shard_n_tokens(s), n_docs = pn_shard_n_docs(s);
    struct stat st;
    uint64_t file_bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    char a[32], b[32], c[32], d[32], e[32];
    printf("file            %s (%s on disk, %.2fx compression)\n", path, fmt_bytes(file_bytes, a),
           file_bytes > 0 ? 4.0 * (double)n_tokens / (double)file_bytes : 0.0);
    printf("format_version  %lld\n", (long long)m->format_version);
    printf("tokenizer       %s\n", m->tokenizer);
    printf("vocab_size      %lld\n", (long long)m->vocab_size);
    printf("eos_id          %lld\n", (long long)m->eos_id);
    printf("source          %s\n", m->source);
    printf("tokens          %s\n", fmt_count(n_tokens, a));
    printf("documents       %s\n", fmt_count(n_docs, e));

    int rc = 0;
    if (n_docs > 0) {
        uint64_t *off = pn_malloc((n_docs + 1) * sizeof *off);
        rc = pn_shard_read_offsets(s, 0, n_docs + 1, off);
        if (!rc) {
            for (uint64_t i = 0; i < n_docs; i++) off[i] = off[i + 1] - off[i]; // lengths, in place
            qsort(off, n_docs, sizeof *off, cmp_u64);
            printf("doc length      min %s, median %s, mean %.1f, p90 %s, max %s (tokens, eos included)\n",
                   fmt_count(off[0], a), fmt_count(off[n_docs / 2], b), (double)n_tokens / (double)n_docs,
                   fmt_count(off[n_docs * 9 / 10], c), fmt_count(off[n_docs - 1], d));
        }
        free(off);
    }
    if (!rc) rc = pn_shard_check_ids(s);
    if (!rc) printf("ids             all < vocab_size (checked)\n");

    if (!rc && tok) {
        const char *want = pn_tokenizer_identity(tok);
        int vocab = pn_tokenizer_vocab_size(tok);
        if (strcmp(want, m->tokenizer) != 0 || vocab != m->vocab_size)
            rc = pn_errorf("%s: made with tokenizer '%s' (vocab %lld), not '%s' (vocab %d)", path, m->tokenizer,
                           (long long)m->vocab_size, want, vocab);
    }
    if (!rc && tok && sample > 0) {
        size_t n = (size_t)(sample < n_tokens ? sample : n_tokens);
        uint32_t *ids = pn_malloc((n ? n : 1) * sizeof *ids);
        rc = pn_shard_read(s, 0, n, ids);
        char *text = NULL;
        size_t len = 0;
        if (!rc) rc = pn_tokenizer_decode(tok, (const int32_t *)(const void *)ids, n, 0, &text, &len);
        if (!rc) {
            printf("first %zu ids  ", n);
            for (size_t i = 0; i < n; i++) printf("%s%u", i ? "," : "", ids[i]);
            printf("\nfirst %zu tokens decoded:\n", n);
            fwrite(text, 1, len, stdout);
            printf("\n");
        }
        free(text);
        free(ids);
    }
    pn_shard_close(s);
    pn_tokenizer_free(tok);
    return rc;
}

// Seconds libhdf5 may take to open a shard (metadata, attributes, offsets) in inspect_isolated.
#define INSPECT_OPEN_TIMEOUT 120
// inspect_isolated's result when the child already printed its error line.
#define REPORTED 2

// libhdf5 1.10 crashes or loops on some damaged metadata before any check of ours can run (a corrupted
// object header or global heap: tests/fuzz/crashes/shard_bytes-libhdf5-*; pn_shard catches what it can
// see from outside, see check_global_heaps). inspect is the tool for suspect shards, so it runs in a child
// process: a crash there becomes one error line naming the file, and opening the file must finish within
// INSPECT_OPEN_TIMEOUT seconds (the full scan after it may take as long as the data needs).
static int inspect_isolated(int argc, char **argv) {
    inspect_args ia;
    int help = 0, pfd[2];
    if (inspect_parse(argc, argv, &ia, &help)) return -1;
    if (help || pipe(pfd) != 0) return inspect_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return inspect_main(argc, argv);
    }
    if (pid == 0) {
        close(pfd[0]);
        inspect_opened_fd = pfd[1];
        int rc = inspect_main(argc, argv);
        fflush(stdout);
        if (rc) fprintf(stderr, "postnas-data: error: %s\n", pn_last_error());
        fflush(stderr);
        _exit(rc ? 1 : 0);
    }
    close(pfd[1]);
    struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
    int ready;
    do ready = poll(&pf, 1, INSPECT_OPEN_TIMEOUT * 1000);
    while (ready < 0 && errno == EINTR);
    close(pfd[0]);
    int st = 0;
    if (ready == 0) { // neither "opened" nor the end of the child: stuck inside libhdf5
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return pn_errorf("%s: libhdf5 did not finish opening it in %d s: the file is corrupted", ia.path,
                         INSPECT_OPEN_TIMEOUT);
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (WIFSIGNALED(st)) {
        fflush(stdout);
        return pn_errorf("%s: libhdf5 crashed reading it (%s): the file is corrupted", ia.path,
                         strsignal(WTERMSIG(st)));
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : REPORTED;
}

// ---------------------------------------------------------------------------------------------------
// synth

#define UNSET UINT64_MAX

typedef struct synth_args {
    const char *task_s, *out;
    uint64_t n, seed, first, entities;
    uint64_t pairs, queries, filler, length; // UNSET: the task's default
    int as_text;
    pn_synth_task task;
} synth_args;

static int synth_parse(int argc, char **argv, synth_args *sa, int *help) {
    *sa = (synth_args){.entities = 64, .pairs = UNSET, .queries = UNSET, .filler = UNSET, .length = UNSET};
    for (int i = 2; i < argc; i += 2) { // "--opt value" pairs
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *help = 1;
            return 0;
        }
        if (!v) return pn_errorf("%s needs a value (see --help)", a);
        if (!strcmp(a, "--task")) sa->task_s = v;
        else if (!strcmp(a, "--out")) sa->out = v;
        else if (!strcmp(a, "--n")) rc = parse_count(a, v, 1, UINT64_C(1) << 32, &sa->n);
        else if (!strcmp(a, "--seed")) rc = parse_count(a, v, 0, UINT64_MAX, &sa->seed);
        else if (!strcmp(a, "--first")) rc = parse_count(a, v, 0, UINT64_C(1) << 62, &sa->first);
        else if (!strcmp(a, "--entities")) rc = parse_count(a, v, 1, 20000, &sa->entities);
        else if (!strcmp(a, "--pairs")) rc = parse_count(a, v, 1, 64, &sa->pairs);
        else if (!strcmp(a, "--queries")) rc = parse_count(a, v, 1, 64, &sa->queries);
        else if (!strcmp(a, "--filler")) rc = parse_count(a, v, 0, 4096, &sa->filler);
        else if (!strcmp(a, "--length")) rc = parse_count(a, v, 1, 4096, &sa->length);
        else if (!strcmp(a, "--format")) {
            if (strcmp(v, "items") && strcmp(v, "text"))
                return pn_errorf("synth: --format must be items or text, not '%s'", v);
            sa->as_text = !strcmp(v, "text");
        } else return pn_errorf("synth: unknown option '%s' (see --help)", a);
        if (rc) return -1;
    }
    if (!sa->task_s || !sa->out || !sa->n) return pn_errorf("synth needs --task, --n and --out (see --help)");
    if (pn_synth_task_parse(sa->task_s, &sa->task)) return -1;
    // A size option of another task is a mistake (it would be ignored), not a no-op.
    const struct { const char *opt; uint64_t v; pn_synth_task task, task2; const char *tasks; } sizes[] = {
        {"--pairs", sa->pairs, PN_SYNTH_MQAR, PN_SYNTH_RECALL, "mqar and recall"},
        {"--queries", sa->queries, PN_SYNTH_MQAR, PN_SYNTH_RECALL, "mqar and recall"},
        {"--filler", sa->filler, PN_SYNTH_PASSKEY, PN_SYNTH_PASSKEY, "passkey"},
        {"--length", sa->length, PN_SYNTH_COPY, PN_SYNTH_COPY, "copy"}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].v != UNSET && sizes[i].task != sa->task && sizes[i].task2 != sa->task)
            return pn_errorf("synth: %s is an option of --task %s, not %s", sizes[i].opt, sizes[i].tasks, sa->task_s);
    return 0;
}

static int synth_main(int argc, char **argv) {
    synth_args sa;
    int help = 0;
    if (synth_parse(argc, argv, &sa, &help)) return -1;
    if (help) {
        usage(stdout);
        return 0;
    }
    const char *task_s = sa.task_s, *out = sa.out;
    const uint64_t n = sa.n, seed = sa.seed, first = sa.first, entities = sa.entities;
    const pn_synth_task task = sa.task;
    pn_synth_spec spec = pn_synth_spec_default(task, seed);
    spec.as_text = sa.as_text;
    if (sa.pairs != UNSET) spec.n_pairs = (int)sa.pairs;
    if (sa.queries != UNSET) spec.n_queries = (int)sa.queries;
    if (sa.filler != UNSET) spec.n_filler = (int)sa.filler;
    if (sa.length != UNSET) spec.length = (int)sa.length;
    pn_synth_world *world = NULL;
    if (task == PN_SYNTH_FACTS_MC || task == PN_SYNTH_FACTS || task == PN_SYNTH_CORPUS) {
        if (!(world = pn_synth_world_new(seed, (int)entities))) return -1;
        spec.world = world;
    }
    int rc = pn_synth_write_jsonl(out, &spec, first, n);
    pn_synth_world_free(world);
    if (!rc) fprintf(stderr, "postnas-data: wrote %llu %s items to %s\n", (unsigned long long)n, task_s, out);
    return rc;
}

#ifndef PN_DATA_NO_MAIN
int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    int rc;
    if (!strcmp(argv[1], "tokenize")) {
        options o = {0};
        rc = tokenize_main(argc, argv, &o);
        for (int i = 0; i < o.n_files; i++) free(o.files[i]);
        free(o.files);
    } else if (!strcmp(argv[1], "inspect")) {
        rc = inspect_isolated(argc, argv);
        if (rc == REPORTED) return 1; // the child printed the error line
    } else if (!strcmp(argv[1], "synth")) {
        rc = synth_main(argc, argv);
    } else {
        rc = pn_errorf("unknown command '%s' (tokenize, inspect or synth; see --help)", argv[1]);
    }
    if (rc) {
        fflush(stdout);
        fprintf(stderr, "postnas-data: error: %s\n", pn_last_error());
        return 1;
    }
    return 0;
}
#endif
