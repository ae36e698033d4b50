// zlib, for reading the gzip-compressed IDX files of MNIST-style data sets. Named CSystemZlib
// because ZIPFoundation (which reads data wheels) brings its own module called CZlib.
#include <zlib.h>
