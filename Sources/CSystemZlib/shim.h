// zlib, for reading the gzip-compressed IDX files of MNIST-style data sets.
#include <zlib.h>
