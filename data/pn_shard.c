// pn_shard: HDF5 token shards (layout in pn_shard.h).
//
// HDF5 prints its whole error stack to stderr by default; we switch that off and report one line that
// names the file, adding HDF5's most specific message where it helps ("truncated file: eof = ...").
#include "pn_shard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../src/pn_common.h"

// Tokens the writer collects before handing them to HDF5: whole chunks, so each chunk is compressed once.
#define WRITE_TOKENS (16 * (size_t)PN_SHARD_CHUNK_TOKENS)
// Ids per block when scanning a whole dataset (offsets at open, ids in check_ids).
#define SCAN_BLOCK ((size_t)1 << 20)
// Deflate level: 1 costs a third of the time of 4 for a few percent more bytes; tokenizing is the
// bottleneck already and the writer runs on one thread.
#define DEFLATE_LEVEL 1

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t h5_first_desc(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = data;
    if (n == 0 && e->desc) snprintf(buf, 200, "%s", e->desc);
    return 0;
}

// HDF5's most specific message on the current error stack ("HDF5 error" when it is empty); clears it.
static const char *h5_detail(char buf[200]) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_first_desc, buf);
    H5Eclear2(H5E_DEFAULT);
    if (!buf[0]) snprintf(buf, 200, "HDF5 error");
    return buf;
}

// File access properties for both ends. Shards never change once renamed into place, and HDF5's
// flock() fails on some cluster file systems (Lustre, NFS) with a message that reads like corruption,
// so files are opened without locks where the library allows it (1.10.7+, 1.12.1+). CLOSE_STRONG:
// closing the file also closes any object an error path left open.
static hid_t h5_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) ||                                      \
    (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 12 && H5_VERS_RELEASE >= 1) || (H5_VERS_MAJOR == 1 && H5_VERS_MINOR >= 13) || \
    H5_VERS_MAJOR > 1
    H5Pset_file_locking(fapl, 0, 1);
#endif
    return fapl;
}

// ---------------------------------------------------------------------------------------------------
// writer

struct pn_shard_writer {
    char *path, *tmp;
    hid_t file, tokens;
    int64_t vocab_size, eos_id;
    char *tokenizer, *source;
    uint32_t *buf; // tokens not yet written to the dataset
    size_t nbuf;
    uint64_t n_written;
    uint64_t *offsets; // n_docs + 1 entries, written at close
    size_t n_offsets, cap_offsets;
    int failed; // an HDF5 write failed: the file is unusable
};

static void writer_free(pn_shard_writer *w) {
    free(w->path);
    free(w->tmp);
    free(w->tokenizer);
    free(w->source);
    free(w->buf);
    free(w->offsets);
    free(w);
}

// Closes whatever HDF5 objects are open and removes the temporary.
static void writer_discard(pn_shard_writer *w) {
    if (w->tokens >= 0) H5Dclose(w->tokens);
    if (w->file >= 0) H5Fclose(w->file);
    H5Eclear2(H5E_DEFAULT);
    unlink(w->tmp);
    writer_free(w);
}

pn_shard_writer *pn_shard_writer_open(const char *path, const pn_shard_meta *meta) {
    h5_quiet();
    if (!meta->tokenizer || !meta->tokenizer[0]) {
        pn_errorf("%s: shard needs a tokenizer identity", path);
        return NULL;
    }
    // Ids are stored as uint32 and handed to the model as int32.
    if (meta->vocab_size <= 0 || meta->vocab_size > INT32_MAX) {
        pn_errorf("%s: vocab size %lld out of range", path, (long long)meta->vocab_size);
        return NULL;
    }
    if (meta->eos_id < 0 || meta->eos_id >= meta->vocab_size) {
        pn_errorf("%s: eos id %lld is not in the vocabulary (size %lld)", path, (long long)meta->eos_id,
                  (long long)meta->vocab_size);
        return NULL;
    }
    if (meta->format_version != 0 && meta->format_version != PN_SHARD_FORMAT_VERSION) {
        pn_errorf("%s: cannot write format version %lld (this build writes %d)", path,
                  (long long)meta->format_version, PN_SHARD_FORMAT_VERSION);
        return NULL;
    }

    pn_shard_writer *w = pn_calloc(1, sizeof *w);
    w->file = w->tokens = -1;
    w->path = pn_strdup(path);
    size_t n = strlen(path) + 32;
    w->tmp = pn_malloc(n);
    snprintf(w->tmp, n, "%s.tmp.%d", path, (int)getpid());
    w->tokenizer = pn_strdup(meta->tokenizer);
    w->source = pn_strdup(meta->source ? meta->source : "");
    w->vocab_size = meta->vocab_size;
    w->eos_id = meta->eos_id;
    w->buf = pn_malloc(WRITE_TOKENS * sizeof *w->buf);
    w->cap_offsets = 1024;
    w->offsets = pn_malloc(w->cap_offsets * sizeof *w->offsets);
    w->offsets[0] = 0;
    w->n_offsets = 1;

    // Check the directory first so the error is the system's ("No such file or directory").
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        pn_errorf("%s: cannot create: %s", w->tmp, strerror(errno));
        writer_free(w);
        return NULL;
    }
    close(fd);

    char detail[200];
    hid_t fapl = h5_fapl();
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (w->file < 0) h5_detail(detail); // every later HDF5 call clears the error stack
    H5Pclose(fapl);
    if (w->file < 0) {
        pn_errorf("%s: cannot create HDF5 file: %s", w->tmp, detail);
        writer_discard(w);
        return NULL;
    }

    // tokens: starts empty, grows at every flush; chunked + shuffle + deflate.
    hsize_t dims = 0, maxdims = H5S_UNLIMITED, chunk = PN_SHARD_CHUNK_TOKENS;
    hid_t space = H5Screate_simple(1, &dims, &maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, DEFLATE_LEVEL);
    H5Pset_obj_track_times(dcpl, 0); // no timestamps: the same input gives the same bytes
    w->tokens = H5Dcreate2(w->file, "tokens", H5T_STD_U32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (w->tokens < 0) h5_detail(detail);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (w->tokens < 0) {
        pn_errorf("%s: cannot create dataset 'tokens': %s", w->tmp, detail);
        writer_discard(w);
        return NULL;
    }
    return w;
}

static int writer_flush(pn_shard_writer *w) {
    if (w->nbuf == 0) return 0;
    char detail[200];
    hsize_t start = w->n_written, count = w->nbuf, size = w->n_written + w->nbuf;
    if (H5Dset_extent(w->tokens, &size) < 0) {
        w->failed = 1;
        return pn_errorf("%s: cannot grow 'tokens' to %llu: %s", w->tmp, (unsigned long long)size,
                         h5_detail(detail));
    }
    hid_t fspace = H5Dget_space(w->tokens);
    hid_t mspace = H5Screate_simple(1, &count, NULL);
    herr_t rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL);
    if (rc >= 0) rc = H5Dwrite(w->tokens, H5T_NATIVE_UINT32, mspace, fspace, H5P_DEFAULT, w->buf);
    if (rc < 0) h5_detail(detail); // before the closes below clear HDF5's error stack
    H5Sclose(mspace);
    H5Sclose(fspace);
    if (rc < 0) {
        w->failed = 1;
        return pn_errorf("%s: write failed (disk full?): %s", w->tmp, detail);
    }
    w->n_written += w->nbuf;
    w->nbuf = 0;
    return 0;
}

int pn_shard_writer_add_doc(pn_shard_writer *w, const uint32_t *ids, size_t n) {
    if (w->failed) return pn_errorf("%s: writer failed earlier", w->path);
    uint64_t doc = w->n_offsets - 1;
    // Validate before touching anything, so a refused document leaves the writer as it was.
    if (n == 0) return pn_errorf("%s: document %llu is empty (it needs at least its eos)", w->path,
                                 (unsigned long long)doc);
    if (ids[n - 1] != (uint32_t)w->eos_id)
        return pn_errorf("%s: document %llu does not end with eos id %lld", w->path, (unsigned long long)doc,
                         (long long)w->eos_id);
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= (uint64_t)w->vocab_size)
            return pn_errorf("%s: document %llu: token %u at position %zu is ≥ vocab size %lld", w->path,
                             (unsigned long long)doc, ids[i], i, (long long)w->vocab_size);

    for (size_t done = 0; done < n;) {
        size_t take = n - done < WRITE_TOKENS - w->nbuf ? n - done : WRITE_TOKENS - w->nbuf;
        memcpy(w->buf + w->nbuf, ids + done, take * sizeof *ids);
        w->nbuf += take;
        done += take;
        if (w->nbuf == WRITE_TOKENS && writer_flush(w)) return -1;
    }
    if (w->n_offsets == w->cap_offsets) {
        w->cap_offsets *= 2;
        w->offsets = pn_realloc(w->offsets, w->cap_offsets * sizeof *w->offsets);
    }
    w->offsets[w->n_offsets] = w->offsets[w->n_offsets - 1] + n;
    w->n_offsets++;
    return 0;
}

uint64_t pn_shard_writer_n_tokens(const pn_shard_writer *w) { return w->offsets[w->n_offsets - 1]; }
uint64_t pn_shard_writer_n_docs(const pn_shard_writer *w) { return w->n_offsets - 1; }

static int write_attr_i64(hid_t loc, const char *name, int64_t v) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return rc < 0 ? -1 : 0;
}

// Variable-length UTF-8 strings, which h5py reads back as str.
static int write_attr_str(hid_t loc, const char *name, const char *s) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, type, &s);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    return rc < 0 ? -1 : 0;
}

static int writer_finish_hdf5(pn_shard_writer *w) {
    char detail[200];
    if (writer_flush(w)) return -1;

    hsize_t n = w->n_offsets, chunk = n < PN_SHARD_CHUNK_TOKENS ? n : PN_SHARD_CHUNK_TOKENS;
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, DEFLATE_LEVEL);
    H5Pset_obj_track_times(dcpl, 0); // no timestamps: the same input gives the same bytes
    hid_t d = H5Dcreate2(w->file, "doc_offsets", H5T_STD_U64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t rc = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->offsets);
    if (rc < 0) h5_detail(detail);
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (rc < 0) return pn_errorf("%s: cannot write 'doc_offsets': %s", w->tmp, detail);

    int bad = write_attr_str(w->file, "tokenizer", w->tokenizer);
    bad |= write_attr_i64(w->file, "vocab_size", w->vocab_size);
    bad |= write_attr_i64(w->file, "eos_id", w->eos_id);
    bad |= write_attr_i64(w->file, "format_version", PN_SHARD_FORMAT_VERSION);
    bad |= write_attr_i64(w->file, "n_tokens", (int64_t)pn_shard_writer_n_tokens(w));
    bad |= write_attr_i64(w->file, "n_docs", (int64_t)pn_shard_writer_n_docs(w));
    bad |= write_attr_str(w->file, "source", w->source);
    if (bad) return pn_errorf("%s: cannot write attributes (disk full?)", w->tmp);

    rc = H5Dclose(w->tokens);
    w->tokens = -1;
    if (rc >= 0) rc = H5Fclose(w->file);
    w->file = -1;
    if (rc < 0) return pn_errorf("%s: cannot close (disk full?): %s", w->tmp, h5_detail(detail));
    return 0;
}

int pn_shard_writer_close(pn_shard_writer *w) {
    if (w->failed) {
        pn_errorf("%s: not written: the writer failed earlier", w->path);
        writer_discard(w);
        return -1;
    }
    if (writer_finish_hdf5(w)) {
        writer_discard(w);
        return -1;
    }
    // HDF5 has closed the file; fsync it through a descriptor of our own before the rename makes it
    // visible, so a crash cannot leave a complete-looking name on incomplete data.
    int rc = 0, fd = open(w->tmp, O_RDONLY);
    if (fd < 0) rc = pn_errorf("%s: cannot reopen for fsync: %s", w->tmp, strerror(errno));
    if (!rc && fsync(fd) != 0) rc = pn_errorf("%s: fsync failed: %s", w->tmp, strerror(errno));
    if (fd >= 0) close(fd);
    if (!rc && rename(w->tmp, w->path) != 0) rc = pn_errorf("%s: rename failed: %s", w->path, strerror(errno));
    if (rc) unlink(w->tmp);
    writer_free(w);
    return rc;
}

void pn_shard_writer_abort(pn_shard_writer *w) {
    if (w) writer_discard(w);
}

// ---------------------------------------------------------------------------------------------------
// reader

struct pn_shard {
    char *path;
    hid_t file, tokens, offsets;
    pn_shard_meta meta;
    char *tokenizer, *source;
    uint64_t n_tokens, n_docs;
};

void pn_shard_close(pn_shard *s) {
    if (!s) return;
    if (s->tokens >= 0) H5Dclose(s->tokens);
    if (s->offsets >= 0) H5Dclose(s->offsets);
    if (s->file >= 0) H5Fclose(s->file);
    H5Eclear2(H5E_DEFAULT);
    free(s->path);
    free(s->tokenizer);
    free(s->source);
    free(s);
}

// Opens root attribute `name`, which must exist and hold a single value of class `cls`.
static hid_t open_attr(const pn_shard *s, const char *name, H5T_class_t cls, const char *what) {
    htri_t exists = H5Aexists(s->file, name);
    if (exists <= 0) {
        pn_errorf("%s: no '%s' attribute (not a postnas shard?)", s->path, name);
        return -1;
    }
    hid_t a = H5Aopen(s->file, name, H5P_DEFAULT);
    if (a < 0) {
        char detail[200];
        pn_errorf("%s: cannot read attribute '%s': %s", s->path, name, h5_detail(detail));
        return -1;
    }
    hid_t type = H5Aget_type(a), space = H5Aget_space(a);
    H5T_class_t c = H5Tget_class(type);
    hssize_t npoints = H5Sget_simple_extent_npoints(space);
    H5Tclose(type);
    H5Sclose(space);
    if (c != cls || npoints != 1) {
        pn_errorf("%s: attribute '%s' is not %s", s->path, name, what);
        H5Aclose(a);
        return -1;
    }
    return a;
}

static int read_attr_i64(const pn_shard *s, const char *name, int64_t *out) {
    hid_t a = open_attr(s, name, H5T_INTEGER, "an integer");
    if (a < 0) return -1;
    herr_t rc = H5Aread(a, H5T_NATIVE_INT64, out);
    char detail[200];
    if (rc < 0) h5_detail(detail);
    H5Aclose(a);
    if (rc < 0) {
        return pn_errorf("%s: cannot read attribute '%s': %s", s->path, name, detail);
    }
    return 0;
}

// A fresh copy of a string attribute, fixed-length (NUL-padded or not) or variable-length.
static char *read_attr_str(const pn_shard *s, const char *name) {
    hid_t a = open_attr(s, name, H5T_STRING, "a string");
    if (a < 0) return NULL;
    hid_t ftype = H5Aget_type(a);
    char *out = NULL, detail[200] = "";
    herr_t rc;
    if (H5Tis_variable_str(ftype) > 0) {
        hid_t mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, H5T_VARIABLE);
        H5Tset_cset(mtype, H5Tget_cset(ftype));
        char *v = NULL;
        rc = H5Aread(a, mtype, &v);
        if (rc < 0) h5_detail(detail);
        if (rc >= 0) out = pn_strdup(v ? v : "");
        if (v) H5free_memory(v);
        H5Tclose(mtype);
    } else {
        size_t n = H5Tget_size(ftype);
        out = pn_calloc(n + 1, 1);
        rc = H5Aread(a, ftype, out);
        if (rc < 0) h5_detail(detail);
    }
    H5Tclose(ftype);
    H5Aclose(a);
    if (rc < 0) {
        free(out);
        pn_errorf("%s: cannot read attribute '%s': %s", s->path, name, detail);
        return NULL;
    }
    return out;
}

// Opens a 1-D unsigned integer dataset of element size `size` and returns its length.
static hid_t open_dataset(const pn_shard *s, const char *name, size_t size, uint64_t *len) {
    htri_t exists = H5Lexists(s->file, name, H5P_DEFAULT);
    if (exists <= 0) {
        pn_errorf("%s: no '%s' dataset (not a postnas shard?)", s->path, name);
        return -1;
    }
    hid_t d = H5Dopen2(s->file, name, H5P_DEFAULT);
    if (d < 0) {
        char detail[200];
        pn_errorf("%s: cannot open dataset '%s': %s", s->path, name, h5_detail(detail));
        return -1;
    }
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    int ok = H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == size && H5Tget_sign(type) == H5T_SGN_NONE;
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims = 0;
    if (rank == 1) H5Sget_simple_extent_dims(space, &dims, NULL);
    H5Tclose(type);
    H5Sclose(space);
    if (!ok) {
        pn_errorf("%s: dataset '%s' is not uint%zu", s->path, name, 8 * size);
        H5Dclose(d);
        return -1;
    }
    if (rank != 1) {
        pn_errorf("%s: dataset '%s' has %d dimensions, not 1", s->path, name, rank);
        H5Dclose(d);
        return -1;
    }
    *len = dims;
    return d;
}

// Reads elements [start, start + n) of a 1-D dataset as `mtype`.
static int read_range(const pn_shard *s, hid_t d, const char *name, hid_t mtype, uint64_t start, size_t n,
                      void *dst) {
    if (n == 0) return 0;
    hsize_t hstart = start, count = n;
    hid_t fspace = H5Dget_space(d);
    hid_t mspace = H5Screate_simple(1, &count, NULL);
    herr_t rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &hstart, NULL, &count, NULL);
    if (rc >= 0) rc = H5Dread(d, mtype, mspace, fspace, H5P_DEFAULT, dst);
    // Every HDF5 call clears the error stack: take the detail before closing anything.
    char detail[200];
    if (rc < 0) h5_detail(detail);
    H5Sclose(mspace);
    H5Sclose(fspace);
    if (rc < 0) {
        return pn_errorf("%s: cannot read %s [%llu, %llu) (file corrupted?): %s", s->path, name,
                         (unsigned long long)start, (unsigned long long)(start + n), detail);
    }
    return 0;
}

// Offsets start at 0, never decrease and end at n_tokens: then every document range is valid.
static int check_offsets(pn_shard *s) {
    uint64_t n = s->n_docs + 1, prev = 0;
    uint64_t *buf = pn_malloc(SCAN_BLOCK * sizeof *buf);
    int rc = 0;
    for (uint64_t at = 0; at < n && !rc; at += SCAN_BLOCK) {
        size_t m = n - at < SCAN_BLOCK ? (size_t)(n - at) : SCAN_BLOCK;
        if (read_range(s, s->offsets, "doc_offsets", H5T_NATIVE_UINT64, at, m, buf)) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < m; i++) {
            uint64_t v = buf[i];
            if (at + i == 0 && v != 0) {
                rc = pn_errorf("%s: doc_offsets[0] is %llu, not 0", s->path, (unsigned long long)v);
                break;
            }
            if (v < prev) {
                rc = pn_errorf("%s: doc_offsets decrease at index %llu (%llu after %llu)", s->path,
                               (unsigned long long)(at + i), (unsigned long long)v, (unsigned long long)prev);
                break;
            }
            prev = v;
        }
    }
    free(buf);
    if (!rc && prev != s->n_tokens)
        rc = pn_errorf("%s: doc_offsets end at %llu, not at n_tokens %llu", s->path, (unsigned long long)prev,
                       (unsigned long long)s->n_tokens);
    return rc;
}

static int shard_validate(pn_shard *s, const char *expected_tokenizer, int64_t expected_vocab) {
    // The format version first: a future layout may differ in everything else.
    int64_t version, n_tokens, n_docs;
    if (read_attr_i64(s, "format_version", &version)) return -1;
    if (version != PN_SHARD_FORMAT_VERSION)
        return pn_errorf("%s: format_version %lld is not one this build reads (%d)", s->path, (long long)version,
                         PN_SHARD_FORMAT_VERSION);
    if (!(s->tokenizer = read_attr_str(s, "tokenizer"))) return -1;
    if (!(s->source = read_attr_str(s, "source"))) return -1;
    if (read_attr_i64(s, "vocab_size", &s->meta.vocab_size) || read_attr_i64(s, "eos_id", &s->meta.eos_id) ||
        read_attr_i64(s, "n_tokens", &n_tokens) || read_attr_i64(s, "n_docs", &n_docs))
        return -1;
    s->meta.tokenizer = s->tokenizer;
    s->meta.source = s->source;
    s->meta.format_version = version;
    if (s->meta.vocab_size <= 0 || s->meta.vocab_size > INT32_MAX)
        return pn_errorf("%s: vocab_size %lld out of range", s->path, (long long)s->meta.vocab_size);
    if (s->meta.eos_id < 0 || s->meta.eos_id >= s->meta.vocab_size)
        return pn_errorf("%s: eos_id %lld is not in the vocabulary (size %lld)", s->path, (long long)s->meta.eos_id,
                         (long long)s->meta.vocab_size);
    if (n_tokens < 0 || n_docs < 0)
        return pn_errorf("%s: negative n_tokens (%lld) or n_docs (%lld)", s->path, (long long)n_tokens,
                         (long long)n_docs);
    s->n_tokens = (uint64_t)n_tokens;
    s->n_docs = (uint64_t)n_docs;

    // Tokenizer identity before the data: a wrong tokenizer is the likeliest mistake and the clearest message.
    int wrong_tok = expected_tokenizer && strcmp(expected_tokenizer, s->tokenizer) != 0;
    int wrong_vocab = expected_vocab > 0 && expected_vocab != s->meta.vocab_size;
    if (wrong_tok && expected_vocab > 0)
        return pn_errorf("%s: made with tokenizer '%s' (vocab %lld), not '%s' (vocab %lld)", s->path, s->tokenizer,
                         (long long)s->meta.vocab_size, expected_tokenizer, (long long)expected_vocab);
    if (wrong_tok)
        return pn_errorf("%s: made with tokenizer '%s' (vocab %lld), not '%s'", s->path, s->tokenizer,
                         (long long)s->meta.vocab_size, expected_tokenizer);
    if (wrong_vocab)
        return pn_errorf("%s: made with tokenizer '%s' (vocab %lld), not vocab %lld", s->path, s->tokenizer,
                         (long long)s->meta.vocab_size, (long long)expected_vocab);

    uint64_t len;
    if ((s->tokens = open_dataset(s, "tokens", 4, &len)) < 0) return -1;
    if (len != s->n_tokens)
        return pn_errorf("%s: 'tokens' holds %llu ids but n_tokens says %llu", s->path, (unsigned long long)len,
                         (unsigned long long)s->n_tokens);
    if ((s->offsets = open_dataset(s, "doc_offsets", 8, &len)) < 0) return -1;
    if (len != s->n_docs + 1)
        return pn_errorf("%s: 'doc_offsets' holds %llu entries but n_docs %llu needs %llu", s->path,
                         (unsigned long long)len, (unsigned long long)s->n_docs, (unsigned long long)(s->n_docs + 1));
    return check_offsets(s);
}

pn_shard *pn_shard_open(const char *path, const char *expected_tokenizer, int64_t expected_vocab) {
    h5_quiet();
    // The system's reason for a missing or unreadable file beats HDF5's.
    struct stat st;
    if (stat(path, &st) != 0) {
        pn_errorf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        pn_errorf("%s: is a directory, not a shard", path);
        return NULL;
    }
    if (access(path, R_OK) != 0) {
        pn_errorf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        pn_errorf("%s: not an HDF5 file or corrupted", path);
        return NULL;
    }
    pn_shard *s = pn_calloc(1, sizeof *s);
    s->file = s->tokens = s->offsets = -1;
    s->path = pn_strdup(path);
    hid_t fapl = h5_fapl();
    s->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    char detail[200];
    if (s->file < 0) h5_detail(detail);
    H5Pclose(fapl);
    if (s->file < 0) {
        // A truncated file keeps a valid superblock, so it gets here: HDF5's detail names the truncation.
        pn_errorf("%s: not an HDF5 file or corrupted (%s)", path, detail);
        pn_shard_close(s);
        return NULL;
    }
    if (shard_validate(s, expected_tokenizer, expected_vocab)) {
        pn_shard_close(s);
        return NULL;
    }
    return s;
}

const char *pn_shard_path(const pn_shard *s) { return s->path; }
const pn_shard_meta *pn_shard_get_meta(const pn_shard *s) { return &s->meta; }
uint64_t pn_shard_n_tokens(const pn_shard *s) { return s->n_tokens; }
uint64_t pn_shard_n_docs(const pn_shard *s) { return s->n_docs; }

int pn_shard_read(pn_shard *s, uint64_t start, size_t n, uint32_t *dst) {
    if (start > s->n_tokens || n > s->n_tokens - start)
        return pn_errorf("%s: tokens [%llu, %llu) run past the end (%llu tokens)", s->path, (unsigned long long)start,
                         (unsigned long long)(start + n), (unsigned long long)s->n_tokens);
    return read_range(s, s->tokens, "tokens", H5T_NATIVE_UINT32, start, n, dst);
}

int pn_shard_read_offsets(pn_shard *s, uint64_t first, size_t n, uint64_t *dst) {
    uint64_t len = s->n_docs + 1;
    if (first > len || n > len - first)
        return pn_errorf("%s: doc_offsets [%llu, %llu) run past the end (%llu entries)", s->path,
                         (unsigned long long)first, (unsigned long long)(first + n), (unsigned long long)len);
    return read_range(s, s->offsets, "doc_offsets", H5T_NATIVE_UINT64, first, n, dst);
}

int pn_shard_doc_range(pn_shard *s, uint64_t doc, uint64_t *begin, uint64_t *end) {
    if (doc >= s->n_docs)
        return pn_errorf("%s: no document %llu (%llu documents)", s->path, (unsigned long long)doc,
                         (unsigned long long)s->n_docs);
    uint64_t off[2];
    if (pn_shard_read_offsets(s, doc, 2, off)) return -1;
    *begin = off[0];
    *end = off[1];
    return 0;
}

int pn_shard_check_ids(pn_shard *s) {
    uint32_t *buf = pn_malloc(SCAN_BLOCK * sizeof *buf);
    uint64_t vocab = (uint64_t)s->meta.vocab_size;
    int rc = 0;
    for (uint64_t at = 0; at < s->n_tokens && !rc; at += SCAN_BLOCK) {
        size_t m = s->n_tokens - at < SCAN_BLOCK ? (size_t)(s->n_tokens - at) : SCAN_BLOCK;
        if (pn_shard_read(s, at, m, buf)) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < m; i++)
            if (buf[i] >= vocab) {
                rc = pn_errorf("%s: token %u at position %llu is ≥ vocab size %llu", s->path, buf[i],
                               (unsigned long long)(at + i), (unsigned long long)vocab);
                break;
            }
    }
    free(buf);
    return rc;
}
