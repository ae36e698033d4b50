// OpenBLAS's CBLAS interface; openblas_set_num_threads lets each rank pin its BLAS threads.
#include <cblas.h>
