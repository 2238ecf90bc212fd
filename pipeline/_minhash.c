/*
 * Bulk MinHash signatures: tokenise, shingle, one-permutation hash and densify
 * many documents in one call, without the GIL.
 *
 * The algorithm is specified, line for line, by the pure-Python reference in
 * pipeline/minhash.py (reference_signature); tests check that both agree bit
 * for bit. Summary, per document (UTF-8 bytes):
 *   word      = maximal run of ASCII letters/digits or bytes >= 0x80, ASCII lower-cased
 *   word hash = splitmix64(FNV-1a-64(word bytes) ^ seed)
 *   shingle   = n consecutive word hashes folded as acc = acc * PRIME + h
 *               (a document of fewer than n words is one shingle of all of them)
 *   exact key = all word hashes folded the same way, then mixed
 *   bin/value = x = splitmix64(shingle ^ seed_mix); bin = (x >> 32) % K; value = (uint32) x
 *   signature = per-bin minimum; an empty bin borrows the next filled bin to its
 *               right (circularly) plus hops * ROTATE; no words at all: all 0xFFFFFFFF
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRIME 0x100000001B3ULL
#define FNV_OFFSET 0xCBF29CE484222325ULL
#define ROTATE 0x9E3779B1U

static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static inline int is_word_byte(unsigned char c) {
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

typedef struct {
    uint64_t *ring;  /* the last `ngram` word hashes */
    uint32_t *sig;
    unsigned char *filled;
} scratch_t;

static inline void add_shingle(uint64_t shingle, uint64_t seed_mix, uint32_t k, uint32_t *sig,
                               unsigned char *filled) {
    uint64_t x = splitmix64(shingle ^ seed_mix);
    uint32_t bin = (uint32_t)((x >> 32) % k);
    uint32_t value = (uint32_t)x;
    if (!filled[bin] || value < sig[bin]) {
        sig[bin] = value;
        filled[bin] = 1;
    }
}

static uint64_t one_document(const unsigned char *s, Py_ssize_t len, uint32_t k, uint32_t ngram,
                             uint64_t seed, uint64_t seed_mix, scratch_t *w, uint32_t *out) {
    uint64_t words = 0, exact = 0;
    memset(w->filled, 0, k);
    Py_ssize_t i = 0;
    while (i < len) {
        while (i < len && !is_word_byte(s[i])) i++;
        if (i >= len) break;
        uint64_t h = FNV_OFFSET;
        while (i < len && is_word_byte(s[i])) {
            unsigned char c = s[i++];
            if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
            h = (h ^ c) * PRIME;
        }
        h = splitmix64(h ^ seed);
        w->ring[words % ngram] = h;
        words++;
        exact = exact * PRIME + h;
        if (words >= ngram) {
            uint64_t acc = 0;
            for (uint64_t j = words - ngram; j < words; j++) acc = acc * PRIME + w->ring[j % ngram];
            add_shingle(acc, seed_mix, k, w->sig, w->filled);
        }
    }
    if (words > 0 && words < ngram) {
        uint64_t acc = 0;
        for (uint64_t j = 0; j < words; j++) acc = acc * PRIME + w->ring[j];
        add_shingle(acc, seed_mix, k, w->sig, w->filled);
    }
    if (words == 0) {
        for (uint32_t b = 0; b < k; b++) out[b] = 0xFFFFFFFFU;
        return splitmix64(seed);
    }
    for (uint32_t b = 0; b < k; b++) {
        if (w->filled[b]) {
            out[b] = w->sig[b];
            continue;
        }
        uint32_t hops = 1;
        while (!w->filled[(b + hops) % k]) hops++;
        out[b] = w->sig[(b + hops) % k] + hops * ROTATE;
    }
    return splitmix64(exact ^ (words * PRIME));
}

static PyObject *signatures(PyObject *self, PyObject *args) {
    PyObject *texts;
    unsigned int k, ngram;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OIIK", &texts, &k, &ngram, &seed)) return NULL;
    if (k == 0 || ngram == 0) {
        PyErr_SetString(PyExc_ValueError, "num_perm and ngram must be positive");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(texts, "texts must be a sequence of str");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    const char **ptrs = PyMem_Malloc(sizeof(char *) * (n ? n : 1));
    Py_ssize_t *lens = PyMem_Malloc(sizeof(Py_ssize_t) * (n ? n : 1));
    PyObject *sig_bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n * k * 4);
    PyObject *key_bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n * 8);
    scratch_t w = {PyMem_Malloc(sizeof(uint64_t) * ngram), PyMem_Malloc(sizeof(uint32_t) * k), PyMem_Malloc(k)};
    if (!ptrs || !lens || !sig_bytes || !key_bytes || !w.ring || !w.sig || !w.filled) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t d = 0; d < n; d++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, d);
        if (!PyUnicode_Check(t)) {
            PyErr_Format(PyExc_TypeError, "text %zd is not a str", d);
            goto fail;
        }
        ptrs[d] = PyUnicode_AsUTF8AndSize(t, &lens[d]);  /* cached in the str object: stays valid */
        if (!ptrs[d]) goto fail;
    }
    uint32_t *out = (uint32_t *)PyBytes_AS_STRING(sig_bytes);
    uint64_t *keys = (uint64_t *)PyBytes_AS_STRING(key_bytes);
    uint64_t seed_mix = splitmix64(seed ^ 0x2545F4914F6CDD1DULL);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t d = 0; d < n; d++)
        keys[d] = one_document((const unsigned char *)ptrs[d], lens[d], k, ngram, seed, seed_mix, &w,
                               out + (size_t)d * k);
    Py_END_ALLOW_THREADS
    PyMem_Free(ptrs); PyMem_Free(lens); PyMem_Free(w.ring); PyMem_Free(w.sig); PyMem_Free(w.filled);
    Py_DECREF(seq);
    return Py_BuildValue("NN", sig_bytes, key_bytes);
fail:
    PyMem_Free(ptrs); PyMem_Free(lens); PyMem_Free(w.ring); PyMem_Free(w.sig); PyMem_Free(w.filled);
    Py_XDECREF(sig_bytes); Py_XDECREF(key_bytes);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef methods[] = {
    {"signatures", signatures, METH_VARARGS,
     "signatures(texts, num_perm, ngram, seed) -> (bytes of n*num_perm uint32, bytes of n uint64 exact keys)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_minhash", "Bulk MinHash signatures in C.", -1, methods};

PyMODINIT_FUNC PyInit__minhash(void) { return PyModule_Create(&module); }
