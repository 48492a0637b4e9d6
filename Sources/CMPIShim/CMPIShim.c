#include "CMPIShim.h"

MPI_Comm elip_mpi_comm_world(void) { return MPI_COMM_WORLD; }
MPI_Comm elip_mpi_comm_null(void) { return MPI_COMM_NULL; }
MPI_Datatype elip_mpi_float(void) { return MPI_FLOAT; }
MPI_Datatype elip_mpi_double(void) { return MPI_DOUBLE; }
MPI_Datatype elip_mpi_int32(void) { return MPI_INT32_T; }
MPI_Datatype elip_mpi_int64(void) { return MPI_INT64_T; }
MPI_Datatype elip_mpi_uint8(void) { return MPI_UINT8_T; }
MPI_Op elip_mpi_sum(void) { return MPI_SUM; }
MPI_Op elip_mpi_max(void) { return MPI_MAX; }
MPI_Op elip_mpi_min(void) { return MPI_MIN; }
MPI_Request elip_mpi_request_null(void) { return MPI_REQUEST_NULL; }
MPI_Errhandler elip_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
void *elip_mpi_in_place(void) { return MPI_IN_PLACE; }
int elip_mpi_success(void) { return MPI_SUCCESS; }
int elip_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
int elip_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
int elip_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
int elip_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
int elip_mpi_thread_single(void) { return MPI_THREAD_SINGLE; }

void elip_scale_float(float *x, int64_t n, float a) {
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}
