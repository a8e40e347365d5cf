// pn_search: beam search over layer placements and the heat map's files (pn_search.h).
#include "pn_search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pn_common.h"

typedef struct {
    uint8_t *set; // L bytes
    double score;
} state;

static int L_cmp; // the layer count for the comparator (qsort has no context argument)

// Best first; ties broken by the set (lexicographically smaller first) so the search is deterministic.
static int by_score(const void *a, const void *b) {
    const state *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return memcmp(x->set, y->set, (size_t)L_cmp);
}

static json_t *layers_json(const uint8_t *set, int L) {
    json_t *a = json_array();
    for (int l = 0; l < L; l++)
        if (set[l]) json_array_append_new(a, json_integer(l));
    return a;
}

int pn_beam_search(int L, int k, int beam, const uint8_t *allowed, pn_place_score score, void *ctx, uint8_t *best,
                   double *best_score, json_t *trace) {
    int n_allowed = 0;
    for (int l = 0; l < L; l++) n_allowed += !allowed || allowed[l];
    if (k < 0 || k > n_allowed) return pn_errorf("placement: %d layers asked for, %d available", k, n_allowed);
    if (beam < 1) return pn_errorf("placement: beam width %d", beam);
    // the beam: starts with the empty set
    state *cur = pn_calloc(1, sizeof *cur);
    int n_cur = 1;
    cur[0].set = pn_calloc((size_t)(L ? L : 1), 1);
    cur[0].score = NAN;
    int rc = 0;
    for (int step = 1; step <= k && !rc; step++) {
        state *next = NULL;
        int n_next = 0;
        for (int b = 0; b < n_cur && !rc; b++)
            for (int l = 0; l < L && !rc; l++) {
                if (cur[b].set[l] || (allowed && !allowed[l])) continue;
                uint8_t *s = pn_malloc((size_t)L);
                memcpy(s, cur[b].set, (size_t)L);
                s[l] = 1;
                int dup = 0;
                for (int i = 0; i < n_next && !dup; i++) dup = !memcmp(next[i].set, s, (size_t)L);
                if (dup) {
                    free(s);
                    continue;
                }
                double v = 0;
                rc = score(ctx, s, &v);
                next = pn_realloc(next, sizeof *next * (size_t)(n_next + 1));
                next[n_next++] = (state){s, isnan(v) ? -INFINITY : v};
            }
        L_cmp = L;
        qsort(next, (size_t)n_next, sizeof *next, by_score);
        const int keep = n_next < beam ? n_next : beam;
        if (trace && !rc) {
            json_t *kept = json_array();
            for (int i = 0; i < keep; i++)
                json_array_append_new(kept, json_pack("{s:o, s:f}", "layers", layers_json(next[i].set, L), "score",
                                                      isfinite(next[i].score) ? next[i].score : -1.0));
            json_array_append_new(trace, json_pack("{s:i, s:o, s:i}", "step", step, "kept", kept, "scored", n_next));
        }
        for (int i = keep; i < n_next; i++) free(next[i].set);
        for (int i = 0; i < n_cur; i++) free(cur[i].set);
        free(cur);
        cur = next, n_cur = keep;
    }
    if (!rc) {
        memcpy(best, cur[0].set, (size_t)L);
        *best_score = cur[0].score;
    }
    for (int i = 0; i < n_cur; i++) free(cur[i].set);
    free(cur);
    return rc;
}

// ---------------------------------------------------------------------------------------------------
// the heat map

int pn_heatmap_csv(const char *path, int L, int n_tasks, const char *const *tasks, const double *value) {
    pn_atomic_file af;
    if (pn_atomic_open(&af, path)) return -1;
    fprintf(af.f, "layer");
    for (int t = 0; t < n_tasks; t++) fprintf(af.f, ",%s", tasks[t]);
    fprintf(af.f, "\n");
    for (int l = 0; l < L; l++) {
        fprintf(af.f, "%d", l);
        for (int t = 0; t < n_tasks; t++) {
            const double v = value[t * L + l];
            if (isnan(v)) fprintf(af.f, ",");
            else fprintf(af.f, ",%.9g", v);
        }
        fprintf(af.f, "\n");
    }
    return pn_atomic_commit(&af);
}

// Text for SVG: &, <, >, " escaped.
static void svg_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '&') fputs("&amp;", f);
        else if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

int pn_heatmap_svg(const char *path, const char *title, int L, int n_tasks, const char *const *tasks,
                   const double *value) {
    const int cell = 44, left = 150, top = 56, height = 30;
    int w = left + L * cell + 20; // wide enough for the two header lines too
    const int need = left + (int)(8 * strlen(title)) + 20;
    if (w < need) w = need;
    if (w < left + 620) w = left + 620;
    const int h = top + n_tasks * height + 40;
    pn_atomic_file af;
    if (pn_atomic_open(&af, path)) return -1;
    FILE *f = af.f;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            w, h);
    fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">", left);
    svg_text(f, title);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"38\" fill=\"#555\">score of the subnet with only this layer full "
               "(others linear); per task, light = lowest, dark = highest</text>\n",
            left);
    for (int l = 0; l < L; l++)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", left + l * cell + cell / 2,
                top + n_tasks * height + 16, l);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#555\">layer</text>\n", left + L * cell / 2,
            top + n_tasks * height + 32);
    for (int t = 0; t < n_tasks; t++) {
        double lo = INFINITY, hi = -INFINITY;
        for (int l = 0; l < L; l++) {
            const double v = value[t * L + l];
            if (!isnan(v)) lo = v < lo ? v : lo, hi = v > hi ? v : hi;
        }
        const int y = top + t * height;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", left - 8, y + height / 2 + 4);
        svg_text(f, tasks[t]);
        fprintf(f, "</text>\n");
        for (int l = 0; l < L; l++) {
            const double v = value[t * L + l];
            // white (lowest) to dark blue (highest) of this task
            const double u = isnan(v) ? 0 : hi > lo ? (v - lo) / (hi - lo) : 1.0;
            const int r = (int)(247 - u * (247 - 8)), g = (int)(251 - u * (251 - 48)), b = (int)(255 - u * (255 - 107));
            fputs("<g><title>task ", f);
            svg_text(f, tasks[t]);
            if (isnan(v)) fprintf(f, ", layer %d: not scored</title>", l);
            else fprintf(f, ", layer %d full: %.4f</title>", l, v);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\" stroke=\"#ddd\"/>",
                    left + l * cell, y, cell, height, r, g, b);
            if (!isnan(v))
                fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%.2f</text>",
                        left + l * cell + cell / 2, y + height / 2 + 4, u > 0.55 ? "white" : "black", v);
            fprintf(f, "</g>\n");
        }
    }
    fprintf(f, "</svg>\n");
    return pn_atomic_commit(&af);
}
