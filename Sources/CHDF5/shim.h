// HDF5's type ids and flags are macros (some over globals valid only after H5open) that
// Swift cannot import; these inline functions return them as typed values.
#include <hdf5.h>
#include <malloc.h>

static inline hid_t cortado_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t cortado_h5s_all(void) { return H5S_ALL; }
static inline hid_t cortado_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t cortado_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t cortado_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t cortado_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t cortado_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t cortado_h5t_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t cortado_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t cortado_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t cortado_h5p_file_create(void) { return H5P_FILE_CREATE; }
static inline unsigned cortado_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned cortado_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline unsigned cortado_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned cortado_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline void cortado_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/// Hands freed memory back to the operating system: HDF5's free lists (chunk buffers of the
/// reads just done), then glibc's free heap pages (malloc keeps what a 4 MB read buffer or a
/// decompressed chunk left). glibc's malloc_trim is not visible to Swift's Glibc module.
static inline void cortado_release_free_memory(void) { H5garbage_collect(); malloc_trim(0); }

/// Opens an in-memory HDF5 file image read-only (core driver, no backing store): the fuzzer
/// feeds checkpoints this way instead of through a temporary file. HDF5 copies the buffer.
/// The name given to H5Fopen must not exist on disk (the core driver refuses "file already
/// exists"), so it is a path under /dev/null, which can never exist.
static inline hid_t cortado_h5_open_image(const void *buf, size_t len) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    if (H5Pset_fapl_core(fapl, 65536, 0) < 0 || H5Pset_file_image(fapl, (void *)buf, len) < 0) { H5Pclose(fapl); return -1; }
    hid_t f = H5Fopen("/dev/null/cortado-file-image", H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
}

/// A file-access property list asking for the newest file format this library writes
/// (HDF5 1.10: superblock v3, object headers v2), whose metadata carries checksums that
/// libhdf5 verifies when reading. The caller closes it.
static inline hid_t cortado_h5_fapl_latest(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    return fapl;
}
