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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../src/pn_common.h"

// Tokens the writer collects before handing them to HDF5: whole chunks, so each chunk is compressed once.
#define WRITE_TOKENS (16 * (size_t)PN_SHARD_CHUNK_TOKENS)
// Ids per block when scanning a whole dataset (offsets at open, ids in check_ids).
#define SCAN_BLOCK ((size_t)1 << 20)
// The largest string attribute read (fixed-length size, or a variable-length string's length).
#define MAX_ATTR_STR ((size_t)1 << 20)
// Elements per chunk a reader accepts: the writer uses PN_SHARD_CHUNK_TOKENS; anything far larger makes a
// single small read decompress a huge chunk.
#define MAX_CHUNK_ELEMS ((hsize_t)1 << 22)
// Deflate never shrinks data by more than about 1032:1, so a deflated dataset whose extent needs more
// bytes than this times its stored size is not what it claims to be (sparse chunks read as zeros).
#define DEFLATE_MAX_RATIO 1032
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
    uint64_t file_bytes; // the file's size: no dataset can hold more than this (before compression)
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
    size_t size = H5Tget_size(type);
    H5S_class_t sc = H5Sget_simple_extent_type(space);
    hssize_t npoints = H5Sget_simple_extent_npoints(space);
    H5Tclose(type);
    H5Sclose(space);
    // Fixed, small sizes: an integer of at most 8 bytes, a string of at most MAX_ATTR_STR bytes.
    int size_ok = cls == H5T_INTEGER ? size >= 1 && size <= 8 : size >= 1 && size <= MAX_ATTR_STR;
    if (c != cls || npoints != 1 || (sc != H5S_SCALAR && sc != H5S_SIMPLE) || !size_ok) {
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
        if (rc >= 0 && v && strnlen(v, MAX_ATTR_STR + 1) > MAX_ATTR_STR) {
            rc = -1;
            snprintf(detail, sizeof detail, "longer than %zu bytes", MAX_ATTR_STR);
        }
        if (rc >= 0) out = pn_strdup(v ? v : "");
        if (v) H5free_memory(v);
        H5Tclose(mtype);
    } else {
        // Read through a memory type of exactly the file's size (open_attr bounded it), so the copy
        // cannot outgrow the buffer whatever the file's padding or character set say.
        size_t n = H5Tget_size(ftype);
        hid_t mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, n);
        H5Tset_strpad(mtype, H5T_STR_NULLPAD);
        out = pn_calloc(n + 1, 1);
        rc = H5Aread(a, mtype, out);
        if (rc < 0) h5_detail(detail);
        H5Tclose(mtype);
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

// Checks the storage of 1-D dataset d (len elements of `size` bytes) before anything reads it. Only what
// the writer (or a plain h5py script) makes is accepted: contiguous data stored in full, or chunked data
// with sane chunks, the filters the writer uses, every chunk stored, and a stored size that can hold the
// extent. Refused: virtual datasets (their data lives in other files, and missing ones read as zeros),
// external storage, compact layouts, unknown filters, and sparse or oversized extents (a 10 KB file
// claiming 2^40 zero-filled elements would otherwise be read in full by a scan).
static int check_storage(const pn_shard *s, hid_t d, const char *name, size_t size, uint64_t len) {
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) {
        char detail[200];
        return pn_errorf("%s: cannot read the layout of dataset '%s': %s", s->path, name, h5_detail(detail));
    }
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int n_ext = H5Pget_external_count(dcpl), nfilt = H5Pget_nfilters(dcpl), rc = 0, deflated = 0;
    hsize_t chunk = 0;
    int chunk_rank = layout == H5D_CHUNKED ? H5Pget_chunk(dcpl, 1, &chunk) : 0;
    for (int i = 0; i < nfilt && !rc; i++) {
        unsigned flags = 0, cd[8];
        size_t ncd = 8;
        H5Z_filter_t f = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0, NULL, NULL);
        if (f == H5Z_FILTER_DEFLATE) deflated = 1;
        else if (f != H5Z_FILTER_SHUFFLE && f != H5Z_FILTER_FLETCHER32)
            rc = pn_errorf("%s: dataset '%s' uses HDF5 filter %d (shards use shuffle and deflate only)", s->path, name,
                           (int)f);
    }
    H5Pclose(dcpl);
    H5Eclear2(H5E_DEFAULT);
    if (rc) return -1;
    if (layout == H5D_VIRTUAL)
        return pn_errorf("%s: dataset '%s' is a virtual dataset (its data lives in other files); shards hold their "
                         "own data", s->path, name);
    if (n_ext != 0)
        return pn_errorf("%s: dataset '%s' is stored in external files; shards hold their own data", s->path, name);
    if (layout != H5D_CHUNKED && layout != H5D_CONTIGUOUS)
        return pn_errorf("%s: dataset '%s' has %s; shards are chunked or contiguous", s->path, name,
                         layout == H5D_COMPACT ? "compact storage" : "an unknown storage layout");
    if (layout == H5D_CONTIGUOUS && nfilt != 0)
        return pn_errorf("%s: dataset '%s' is contiguous but has filters", s->path, name);
    if (layout == H5D_CHUNKED && (chunk_rank != 1 || chunk < 1 || chunk > MAX_CHUNK_ELEMS))
        return pn_errorf("%s: dataset '%s' has chunks of %llu elements (rank %d); shards use 1-D chunks of 1 to %llu",
                         s->path, name, (unsigned long long)chunk, chunk_rank, (unsigned long long)MAX_CHUNK_ELEMS);
    if (len == 0) return 0;
    // len <= 2^64 / size was not checked by HDF5: anything that large cannot be stored anyway.
    if (len > UINT64_MAX / 8 / DEFLATE_MAX_RATIO)
        return pn_errorf("%s: dataset '%s' claims %llu elements, more than any file holds", s->path, name,
                         (unsigned long long)len);
    const uint64_t need = len * size, stored = H5Dget_storage_size(d);
    H5Eclear2(H5E_DEFAULT);
    if (stored > s->file_bytes)
        return pn_errorf("%s: dataset '%s' claims %llu stored bytes but the file has %llu (truncated or corrupted)",
                         s->path, name, (unsigned long long)stored, (unsigned long long)s->file_bytes);
    if (layout == H5D_CONTIGUOUS) {
        if (stored != need)
            return pn_errorf("%s: dataset '%s' holds %llu elements (%llu bytes) but stores %llu bytes (sparse or "
                             "corrupted)", s->path, name, (unsigned long long)len, (unsigned long long)need,
                             (unsigned long long)stored);
        return 0;
    }
    hsize_t want_chunks = (len + chunk - 1) / chunk, have_chunks = 0;
    hid_t fspace = H5Dget_space(d);
    herr_t nrc = fspace < 0 ? -1 : H5Dget_num_chunks(d, fspace, &have_chunks);
    char detail[200];
    if (nrc < 0) h5_detail(detail);
    if (fspace >= 0) H5Sclose(fspace);
    if (nrc < 0) return pn_errorf("%s: cannot count the chunks of dataset '%s': %s", s->path, name, detail);
    if (have_chunks != want_chunks)
        return pn_errorf("%s: dataset '%s' holds %llu elements in chunks of %llu, but %llu of its %llu chunks are "
                         "stored (sparse or corrupted)", s->path, name, (unsigned long long)len,
                         (unsigned long long)chunk, (unsigned long long)have_chunks, (unsigned long long)want_chunks);
    if (deflated ? need / DEFLATE_MAX_RATIO > stored : need > stored)
        return pn_errorf("%s: dataset '%s' holds %llu elements (%llu bytes) in %llu stored bytes, more than %s allows "
                         "(corrupted)", s->path, name, (unsigned long long)len, (unsigned long long)need,
                         (unsigned long long)stored, deflated ? "deflate" : "uncompressed storage");
    return 0;
}

// Opens a 1-D unsigned integer dataset of element size `size` (a hard link in the file itself, not an
// external link) and returns its length.
static hid_t open_dataset(const pn_shard *s, const char *name, size_t size, uint64_t *len) {
    htri_t exists = H5Lexists(s->file, name, H5P_DEFAULT);
    if (exists <= 0) {
        H5Eclear2(H5E_DEFAULT);
        pn_errorf("%s: no '%s' dataset (not a postnas shard?)", s->path, name);
        return -1;
    }
    H5L_info_t li;
    if (H5Lget_info(s->file, name, &li, H5P_DEFAULT) < 0 || li.type != H5L_TYPE_HARD) {
        H5Eclear2(H5E_DEFAULT);
        pn_errorf("%s: '%s' is a link to another object or file, not a dataset of the shard", s->path, name);
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
    int simple = H5Sget_simple_extent_type(space) == H5S_SIMPLE;
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims = 0;
    if (simple && rank == 1) H5Sget_simple_extent_dims(space, &dims, NULL);
    H5Tclose(type);
    H5Sclose(space);
    H5Eclear2(H5E_DEFAULT);
    if (!ok) {
        pn_errorf("%s: dataset '%s' is not uint%zu", s->path, name, 8 * size);
        H5Dclose(d);
        return -1;
    }
    if (!simple || rank != 1) {
        pn_errorf("%s: dataset '%s' has %d dimensions, not 1", s->path, name, simple ? rank : 0);
        H5Dclose(d);
        return -1;
    }
    if (check_storage(s, d, name, size, dims)) {
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
            if (at + i > 0 && v == prev) { // every document holds at least its eos
                rc = pn_errorf("%s: document %llu is empty (doc_offsets[%llu] = doc_offsets[%llu] = %llu; every "
                               "document ends with eos)", s->path, (unsigned long long)(at + i - 1),
                               (unsigned long long)(at + i - 1), (unsigned long long)(at + i), (unsigned long long)v);
                break;
            }
            if (v > s->n_tokens) {
                rc = pn_errorf("%s: doc_offsets[%llu] is %llu, past n_tokens %llu", s->path,
                               (unsigned long long)(at + i), (unsigned long long)v, (unsigned long long)s->n_tokens);
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
    if (!s->tokenizer[0]) return pn_errorf("%s: the 'tokenizer' attribute is empty (no tokenizer identity)", s->path);
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
    if (check_offsets(s)) return -1;
    // The last document ends with eos (one read; pn_shard_check_ids checks every document).
    if (s->n_tokens > 0) {
        uint32_t last;
        if (read_range(s, s->tokens, "tokens", H5T_NATIVE_UINT32, s->n_tokens - 1, 1, &last)) return -1;
        if (last != (uint64_t)s->meta.eos_id)
            return pn_errorf("%s: document %llu does not end with eos id %lld (its last token is %u)", s->path,
                             (unsigned long long)(s->n_docs - 1), (long long)s->meta.eos_id, last);
    }
    return 0;
}

static uint64_t le_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

// The string attributes are variable-length strings, whose bytes live in the file's global heap
// collections ("GCOL"); libhdf5 1.10 trusts the sizes inside a collection, and a damaged one makes
// H5Aread copy past its buffers or loop (issue 11). So before HDF5 sees the file, the collections are
// walked here (format: HDF5 specification, "Global Heap"; 8-byte lengths, as every writer we know uses):
// a collection's size must lie within the file, and its objects (16-byte header + data padded to 8) must
// tile it. A collection is recognized by its signature and version with the reserved bytes zero, which
// compressed token data matches by chance with probability 2^-64 per position. Only the first and last
// HEAP_SCAN_BYTES of the file are searched, so opening a shard never reads its bulk: writers put the
// attributes' heap after the datasets (postnas-data: at the very end) or before them (a script that sets
// attributes first).
#define HEAP_SCAN_BYTES ((uint64_t)1 << 20)

// The collection at f + at (its signature checked): 0, or -1 with the error set.
static int check_heap_at(const char *path, const unsigned char *f, uint64_t len, uint64_t at) {
    if (len - at < 16) return 0; // too short to be one: HDF5 refuses it by itself
    const unsigned char *p = f + at;
    const uint64_t size = le_u64(p + 8);
    if (size < 32 || size > len - at)
        return pn_errorf("%s: corrupted HDF5 global heap at byte %llu (size %llu, file %llu bytes)", path,
                         (unsigned long long)at, (unsigned long long)size, (unsigned long long)len);
    for (uint64_t q = 16; q + 16 <= size;) {
        const unsigned idx = (unsigned)(p[q] | p[q + 1] << 8);
        const uint64_t osize = le_u64(p + q + 8);
        if (idx == 0) { // free space: the rest of the collection, its header included
            if (osize > size - q)
                return pn_errorf("%s: corrupted HDF5 global heap at byte %llu (free space of %llu bytes at offset %llu "
                                 "overruns it)", path, (unsigned long long)at, (unsigned long long)osize,
                                 (unsigned long long)q);
            return 0;
        }
        if (osize > size - q - 16 || ((osize + 7) & ~(uint64_t)7) > size - q - 16)
            return pn_errorf("%s: corrupted HDF5 global heap at byte %llu (object %u of %llu bytes at offset %llu "
                             "overruns it)", path, (unsigned long long)at, idx, (unsigned long long)osize,
                             (unsigned long long)q);
        q += 16 + ((osize + 7) & ~(uint64_t)7);
    }
    return 0;
}

// Every collection whose signature starts in [from, to).
static int check_heaps_in(const char *path, const unsigned char *f, uint64_t len, uint64_t from, uint64_t to) {
    static const unsigned char sig[8] = {'G', 'C', 'O', 'L', 1, 0, 0, 0};
    const uint64_t stop = to + 7 < len ? to + 7 : len; // a signature may straddle the window's end
    for (uint64_t at = from; at < to;) {
        const unsigned char *hit = memmem(f + at, (size_t)(stop - at), sig, sizeof sig);
        if (!hit) break;
        at = (uint64_t)(hit - f);
        if (check_heap_at(path, f, len, at)) return -1;
        at += sizeof sig;
    }
    return 0;
}

static int check_global_heaps(const char *path, int fd, uint64_t len) {
    if (len < 16) return 0;
    void *map = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) return 0; // nothing to check with: HDF5 reports what it finds
    const uint64_t head = len < HEAP_SCAN_BYTES ? len : HEAP_SCAN_BYTES;
    const uint64_t tail_from = len - head > HEAP_SCAN_BYTES ? len - HEAP_SCAN_BYTES : head;
    int rc = check_heaps_in(path, map, len, 0, head);
    if (!rc && tail_from < len) rc = check_heaps_in(path, map, len, tail_from, len);
    munmap(map, (size_t)len);
    return rc;
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
    // Regular files only: a FIFO would block HDF5's open() for ever.
    int fd = pn_open_regular(path);
    if (fd < 0) return NULL;
    struct stat fst;
    int st_rc = fstat(fd, &fst);
    if (st_rc != 0) pn_errorf("%s: cannot open: %s", path, strerror(errno));
    else st_rc = check_global_heaps(path, fd, (uint64_t)fst.st_size);
    close(fd);
    if (st_rc != 0) return NULL;
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        pn_errorf("%s: not an HDF5 file or corrupted", path);
        return NULL;
    }
    pn_shard *s = pn_calloc(1, sizeof *s);
    s->file = s->tokens = s->offsets = -1;
    s->path = pn_strdup(path);
    s->file_bytes = (uint64_t)fst.st_size;
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

// One pass over the tokens, with the document ends (doc_offsets[1..n_docs], strictly increasing since
// check_offsets) walked alongside: every id < vocab_size, every document's last token the eos id.
int pn_shard_check_ids(pn_shard *s) {
    uint32_t *buf = pn_malloc(SCAN_BLOCK * sizeof *buf);
    uint64_t *ends = pn_malloc(SCAN_BLOCK * sizeof *ends);
    const uint64_t vocab = (uint64_t)s->meta.vocab_size, eos = (uint64_t)s->meta.eos_id;
    uint64_t doc_base = 0; // document of ends[0]
    size_t ne = 0, ei = 0; // ends[ei, ne) not reached yet
    int rc = 0;
    for (uint64_t at = 0; at < s->n_tokens && !rc; at += SCAN_BLOCK) {
        size_t m = s->n_tokens - at < SCAN_BLOCK ? (size_t)(s->n_tokens - at) : SCAN_BLOCK;
        if (pn_shard_read(s, at, m, buf)) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < m && !rc; i++) {
            if (buf[i] >= vocab) {
                rc = pn_errorf("%s: token %u at position %llu is ≥ vocab size %llu", s->path, buf[i],
                               (unsigned long long)(at + i), (unsigned long long)vocab);
                break;
            }
            if (ei == ne && doc_base + ne < s->n_docs) {
                doc_base += ne;
                ne = s->n_docs - doc_base < SCAN_BLOCK ? (size_t)(s->n_docs - doc_base) : SCAN_BLOCK;
                ei = 0;
                if (pn_shard_read_offsets(s, doc_base + 1, ne, ends)) rc = -1;
            }
            if (!rc && ei < ne && ends[ei] == at + i + 1) {
                if (buf[i] != eos)
                    rc = pn_errorf("%s: document %llu does not end with eos id %llu (token %u at position %llu)",
                                   s->path, (unsigned long long)(doc_base + ei), (unsigned long long)eos, buf[i],
                                   (unsigned long long)(at + i));
                ei++;
            }
        }
    }
    free(ends);
    free(buf);
    return rc;
}
