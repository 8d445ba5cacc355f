/* test_mpi_loader.c: the stream loader (src/loader.c, src/loader_stream.c)
 * and the row-set reads under it (src/dataset.c). Run under mpirun with 1,
 * 2 and 3 ranks by tests/run-all.sh, CK_FORK=no: a rank's slice depends on
 * P. Fetches under replicate and stream are not collective, so every rank
 * works on files of its own and no test waits for another rank.
 *
 * The promises: stream hands each rank the very bytes replicate does, for
 * every layout and label kind, whether the batch was prefetched, prefetched
 * wrongly or not at all; and a file that vanishes, shrinks or turns to
 * garbage under a running loader makes fetch fail with the path, not hang. */
#include <check.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardfit/comm.h"
#include "shardfit/dataset.h"
#include "shardfit/loader.h"
#include "shardfit/rng.h"
#include "shardfit/sampler.h"
#include "testutil.h"

#define N 97   /* rows in the files */
#define D 6    /* features per row: (N, 2, 3) */
#define B 13   /* global batch */

static SfComm *world;
static char path[256];

/* This rank's file, with each feature and label layout the loaders meet:
 * /c contiguous, /z chunked and gzip-compressed; y int16 class ids, f
 * float32 and t float64 targets (N, 2). /bad/y has one label of 7. */
static int write_file(void)
{
    uint8_t x[N * D];
    int16_t y[N];
    float f[N * 2];
    double t[N * 2];
    uint64_t key = sf_rng_key(3, 1, 4);
    for (int i = 0; i < N * D; i++)
        x[i] = (uint8_t)sf_rng_at(key, (uint64_t)i);
    for (int i = 0; i < N; i++) {
        y[i] = (int16_t)(sf_rng_at(key, 1000u + (uint64_t)i) % 3);
        for (int k = 0; k < 2; k++)
            t[2 * i + k] = f[2 * i + k] = (float)(i * 0.25 - k);
    }
    t[3] = 1.0 / 3.0; /* rounds when narrowed to float32 */
    SfError err = {0};
    unlink(path);
    SfH5Writer *w = sf_h5writer_open(path, &err);
    int64_t dims[3] = {N, 2, 3}, n = N, td[2] = {N, 2};
    int bad = !w;
    for (int z = 0; z < 2 && !bad; z++) {
        char xn[16], yn[16];
        snprintf(xn, sizeof xn, "/%c/x", z ? 'z' : 'c');
        snprintf(yn, sizeof yn, "/%c/y", z ? 'z' : 'c');
        bad = sf_h5writer_write(w, xn, SF_DTYPE_U8, 3, dims, x, z, &err) ||
              sf_h5writer_write(w, yn, SF_DTYPE_I16, 1, &n, y, z, &err);
    }
    y[90] = 7;
    bad = bad || sf_h5writer_write(w, "/f/y", SF_DTYPE_F32, 2, td, f, 0, &err) ||
          sf_h5writer_write(w, "/t/y", SF_DTYPE_F64, 2, td, t, 0, &err) ||
          sf_h5writer_write(w, "/bad/y", SF_DTYPE_I16, 1, &n, y, 0, &err) ||
          sf_h5writer_close(w, &err);
    if (bad)
        fprintf(stderr, "writing %s: %s\n", path, err.msg);
    return bad ? -1 : 0;
}

static SfLoader *open_loader(SfLoaderKind kind, const char *features,
                             const char *labels, int64_t row0, int64_t rows)
{
    SfLoaderSpec spec = {kind, path, features, labels, "data", "data.path",
                         row0, rows, 0.5f, -1.0f};
    SfError err = {0};
    SfLoader *l = sf_loader_open(&spec, world, &err);
    ck_assert_msg(l != NULL, "%s", err.msg);
    ck_assert_msg(sf_loader_reserve(l, B, &err) == 0, "%s", err.msg);
    return l;
}

typedef struct {
    float x[B * D];
    int32_t classes[B];
    float values[B * 2];
} Slice;

/* Fetches batch s of perm; the slice's length, or -1 with err. */
static int64_t fetch(SfLoader *l, const int64_t *perm, int64_t n, int64_t s,
                     Slice *out, SfError *err)
{
    int64_t start, count;
    sf_sampler_batch(n, B, s, &start, &count);
    memset(out, 0xee, sizeof *out);
    int classes = sf_loader_has_classes(l);
    return sf_loader_fetch(l, perm + start, count, out->x,
                           classes ? out->classes : NULL,
                           classes ? NULL : out->values, err);
}

static void prefetch(SfLoader *l, const int64_t *perm, int64_t n, int64_t s)
{
    int64_t start, count;
    sf_sampler_batch(n, B, s, &start, &count);
    sf_loader_prefetch(l, perm + start, count);
}

START_TEST(test_stream_gives_the_bytes_of_replicate)
{
    const char *sets[][2] = {{"/c/x", "/c/y"}, {"/z/x", "/z/y"},
                             {"/c/x", "/t/y"}, {"/z/x", "/f/y"}};
    const int64_t row0 = 5, n = 80, steps = sf_sampler_steps(n, B, 0);
    int64_t perm[N];
    for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) {
        SfLoader *rep = open_loader(SF_LOADER_REPLICATE, sets[k][0], sets[k][1],
                                    row0, n);
        SfLoader *str = open_loader(SF_LOADER_STREAM, sets[k][0], sets[k][1],
                                    row0, n);
        for (int64_t epoch = 0; epoch < 2; epoch++) {
            sf_sampler_permutation(7, epoch, 1, n, perm);
            for (int64_t s = 0; s < steps; s++) {
                Slice a, b;
                SfError err = {0};
                int64_t la = fetch(rep, perm, n, s, &a, &err);
                int64_t lb = fetch(str, perm, n, s, &b, &err);
                ck_assert_msg(lb >= 0, "%s", err.msg);
                ck_assert_int_eq(la, lb);
                ck_assert_msg(memcmp(&a, &b, sizeof a) == 0,
                              "%s %s: epoch %lld step %lld differs", sets[k][0],
                              sets[k][1], (long long)epoch, (long long)s);
                /* next batch; a wrong one (fetch must not use it); none */
                if (s % 3 == 0)
                    prefetch(str, perm, n, s + 1 < steps ? s + 1 : 0);
                else if (s % 3 == 1)
                    prefetch(str, perm, n, (s + 2) % steps);
            }
        }
        int64_t off, len;
        sf_loader_block(str, &off, &len);
        for (int64_t i = 0; i < len; i += 4) {
            int64_t m = len - i < 4 ? len - i : 4;
            Slice a, b;
            SfError err = {0};
            memset(&a, 0, sizeof a);
            memset(&b, 0, sizeof b);
            int classes = sf_loader_has_classes(rep);
            ck_assert(sf_loader_read_block(rep, i, m, a.x, a.classes, a.values,
                                           &err) == 0);
            ck_assert_msg(sf_loader_read_block(str, i, m, b.x, b.classes,
                                               b.values, &err) == 0, "%s", err.msg);
            ck_assert(memcmp(a.x, b.x, (size_t)(m * D) * sizeof(float)) == 0);
            if (classes)
                ck_assert(memcmp(a.classes, b.classes, (size_t)m * 4) == 0);
            else
                ck_assert(memcmp(a.values, b.values, (size_t)m * 8) == 0);
        }
        sf_loader_free(rep);
        sf_loader_free(str);
    }
}
END_TEST

/* Drops the file's pages from the page cache, so reads of it go to the
 * disk: contiguous rows then take dataset.c's second pass. */
static void drop_cached_pages(void)
{
    int fd = open(path, O_RDONLY);
    ck_assert(fd >= 0);
    ck_assert_int_eq(fdatasync(fd), 0);
    ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
}

/* Sorted row sets, with runs and a repeat, read as the range reads do,
 * from the page cache and from the disk. */
START_TEST(test_dataset_reads_sorted_rows)
{
    const int64_t rows[] = {0, 1, 2, 7, 7, 40, 41, 42, 43, 96};
    const int64_t m = sizeof rows / sizeof rows[0];
    const char *xs[] = {"/c/x", "/z/x"}, *ys[] = {"/c/y", "/z/y"};
    SfError err = {0};
    for (int z = 0; z < 2; z++) {
        SfDataset *ds = sf_dataset_open(path, xs[z], ys[z], &err);
        ck_assert_msg(ds != NULL, "%s", err.msg);
        uint8_t all[N * D], got[sizeof rows / sizeof rows[0] * D];
        int32_t yall[N], y[sizeof rows / sizeof rows[0]];
        ck_assert(sf_dataset_read_features(ds, 0, N, all, &err) == 0);
        ck_assert(sf_dataset_read_class_labels(ds, 0, N, yall, &err) == 0);
        ck_assert_msg(sf_dataset_read_feature_rows(ds, rows, m, got, &err) == 0,
                      "%s", err.msg);
        ck_assert(sf_dataset_read_class_label_rows(ds, rows, m, y, &err) == 0);
        for (int64_t i = 0; i < m; i++) {
            ck_assert(memcmp(got + i * D, all + rows[i] * D, D) == 0);
            ck_assert_int_eq(y[i], yall[rows[i]]);
        }
        drop_cached_pages();
        memset(got, 0, sizeof got);
        ck_assert_msg(sf_dataset_read_feature_rows(ds, rows, m, got, &err) == 0,
                      "%s", err.msg);
        for (int64_t i = 0; i < m; i++)
            ck_assert(memcmp(got + i * D, all + rows[i] * D, D) == 0);
        ck_assert(sf_dataset_read_feature_rows(ds, rows, 0, got, &err) == 0);
        const int64_t unsorted[] = {3, 2}, outside[] = {5, N};
        ck_assert(sf_dataset_read_feature_rows(ds, unsorted, 2, got, &err) < 0);
        ck_assert_msg(strstr(err.msg, "not sorted (2 after 3)"), "%s", err.msg);
        sf_error_clear(&err);
        ck_assert(sf_dataset_read_class_label_rows(ds, outside, 2, y, &err) < 0);
        ck_assert_msg(strstr(err.msg, "row 97 of") &&
                      strstr(err.msg, "is out of range: it has 97 rows"),
                      "%s", err.msg);
        sf_error_clear(&err);
        sf_dataset_close(ds);
    }
    /* float64 targets narrowed to float32 exactly as a range read does */
    SfDataset *ds = sf_dataset_open(path, "/c/x", "/t/y", &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    float tall[N * 2], t[sizeof rows / sizeof rows[0] * 2];
    ck_assert(sf_dataset_read_target_labels(ds, 0, N, tall, &err) == 0);
    ck_assert(sf_dataset_read_target_label_rows(ds, rows, m, t, &err) == 0);
    for (int64_t i = 0; i < m; i++)
        ck_assert(memcmp(t + 2 * i, tall + 2 * rows[i], 8) == 0);
    ck_assert(tall[3] == (float)(1.0 / 3.0));
    sf_dataset_close(ds);
}
END_TEST

/* Under stream each rank checks the labels of its block, read from the
 * file; the error names the file row, as under shard. */
START_TEST(test_stream_checks_the_labels_of_its_block)
{
    int64_t off, len;
    SfLoader *l = open_loader(SF_LOADER_STREAM, "/c/x", "/bad/y", 2, 95);
    sf_loader_block(l, &off, &len);
    SfError err = {0};
    int rc = sf_loader_check_classes(l, 3, &err);
    if (2 + off <= 90 && 90 < 2 + off + len) {
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(err.code, SF_EXIT_INPUT);
        ck_assert_msg(strstr(err.msg, "label 7 at row 90 is outside [0, 3)"),
                      "%s", err.msg);
    } else {
        ck_assert_msg(rc == 0, "%s", err.msg);
    }
    sf_loader_free(l);
}
END_TEST

static void expect_failure(SfLoader *l, const int64_t *perm, int64_t s,
                           const char *what)
{
    Slice out;
    SfError err = {0};
    ck_assert_int_eq(fetch(l, perm, N, s, &out, &err), -1);
    ck_assert_int_eq(err.code, SF_EXIT_FAILURE);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, what), "%s", err.msg);
}

/* Deleted under a running loader: the open file would still read, but the
 * data at the path is gone or another file now, so stream stops. */
START_TEST(test_stream_fails_on_a_deleted_file)
{
    int64_t perm[N];
    sf_sampler_permutation(1, 0, 1, N, perm);
    SfLoader *l = open_loader(SF_LOADER_STREAM, "/c/x", "/c/y", 0, -1);
    Slice out;
    SfError err = {0};
    ck_assert_msg(fetch(l, perm, N, 0, &out, &err) >= 0, "%s", err.msg);
    ck_assert_int_eq(unlink(path), 0);
    prefetch(l, perm, N, 1);
    expect_failure(l, perm, 1, "was deleted or replaced"); /* the thread's */
    expect_failure(l, perm, 2, "was deleted or replaced"); /* read at once */
    prefetch(l, perm, N, 3); /* left running: free must wait for it */
    float x[D];
    int32_t y;
    ck_assert_int_eq(sf_loader_read_block(l, 0, 1, x, &y, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "was deleted or replaced"), "%s", err.msg);
    sf_loader_free(l);
    ck_assert_int_eq(write_file(), 0);
}
END_TEST

START_TEST(test_stream_fails_on_a_truncated_file)
{
    const char *sets[][2] = {{"/c/x", "/c/y"}, {"/z/x", "/z/y"}};
    int64_t perm[N];
    sf_sampler_permutation(1, 0, 1, N, perm);
    for (int k = 0; k < 2; k++) {
        SfLoader *l = open_loader(SF_LOADER_STREAM, sets[k][0], sets[k][1], 0, -1);
        Slice out;
        SfError err = {0};
        ck_assert_msg(fetch(l, perm, N, 0, &out, &err) >= 0, "%s", err.msg);
        ck_assert_int_eq(truncate(path, 2048), 0);
        prefetch(l, perm, N, 1);
        expect_failure(l, perm, 1, "shrank from");
        sf_loader_free(l);
        ck_assert_int_eq(write_file(), 0);
    }
}
END_TEST

/* Garbage in compressed chunks, the file's size unchanged: HDF5's own read
 * fails (the chunks do not inflate), and the message names the file, the
 * dataset and HDF5's reason. /sx has 8-row chunks, so opening the loader
 * (which reads row 0) does not bring rows 40 to 55 into the chunk cache. */
START_TEST(test_stream_fails_on_corrupt_chunks)
{
    uint8_t x[N * D] = {0};
    hsize_t dims[3] = {N, 2, 3}, chunk[3] = {8, 2, 3}, start[3];
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t space = H5Screate_simple(3, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 3, chunk);
    H5Pset_deflate(dcpl, 4);
    hid_t d = H5Dcreate2(f, "/sx", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl,
                         H5P_DEFAULT);
    ck_assert(d >= 0 && H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL,
                                 H5P_DEFAULT, x) >= 0);
    haddr_t addr[2];
    hsize_t size[2];
    unsigned mask;
    for (int c = 0; c < 2; c++)
        ck_assert(H5Dget_chunk_info(d, space, (hsize_t)(5 + c), start, &mask,
                                    &addr[c], &size[c]) >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Fclose(f);
    SfLoader *l = open_loader(SF_LOADER_STREAM, "/sx", "/c/y", 0, -1);
    FILE *fp = fopen(path, "r+b");
    ck_assert_ptr_nonnull(fp);
    for (int c = 0; c < 2; c++) {
        ck_assert(fseek(fp, (long)addr[c], SEEK_SET) == 0);
        for (hsize_t k = 0; k < size[c]; k++)
            fputc(0x5a, fp);
    }
    ck_assert(fclose(fp) == 0);
    int64_t ids[N];
    for (int64_t i = 0; i < N; i++)
        ids[i] = (i + 40) % N; /* batch 0 is rows 40 to 52 */
    prefetch(l, ids, N, 0);
    expect_failure(l, ids, 0, "of '/sx' failed: ");
    sf_loader_free(l);
    ck_assert_int_eq(write_file(), 0);
}
END_TEST

int main(int argc, char **argv)
{
    world = sf_comm_init(&argc, &argv);
    if (!world)
        return 1;
    snprintf(path, sizeof path, "/tmp/shardfit-test-loader-%d-%d.h5",
             (int)getppid(), sf_comm_rank(world));
    if (write_file())
        return 1;

    Suite *s = suite_create("mpi_loader");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_stream_gives_the_bytes_of_replicate);
    tcase_add_test(tc, test_dataset_reads_sorted_rows);
    tcase_add_test(tc, test_stream_checks_the_labels_of_its_block);
    tcase_add_test(tc, test_stream_fails_on_a_deleted_file);
    tcase_add_test(tc, test_stream_fails_on_a_truncated_file);
    tcase_add_test(tc, test_stream_fails_on_corrupt_chunks);
    suite_add_tcase(s, tc);
    int status = sf_test_run(s);

    unlink(path);
    sf_comm_barrier(world);
    sf_comm_free(world);
    return status;
}
