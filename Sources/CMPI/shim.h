// Open MPI's handles are macros over global structs that Swift cannot import
// ("structure not supported"); these inline functions hand them over as values.
#include <mpi.h>

static inline MPI_Comm cortado_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype cortado_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype cortado_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype cortado_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype cortado_mpi_uint8(void) { return MPI_UINT8_T; }
static inline MPI_Datatype cortado_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype cortado_mpi_uint16(void) { return MPI_UINT16_T; }
static inline MPI_Op cortado_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op cortado_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op cortado_mpi_min(void) { return MPI_MIN; }
static inline void *cortado_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *cortado_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Request cortado_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Info cortado_mpi_info_null(void) { return MPI_INFO_NULL; }
