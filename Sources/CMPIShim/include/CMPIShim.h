// OpenMPI exposes its predefined handles (MPI_COMM_WORLD, MPI_FLOAT, ...) as macros that take the
// address of global structs; Swift cannot import them, so these functions return them.
#ifndef ELIP_CMPISHIM_H
#define ELIP_CMPISHIM_H
#include <mpi.h>
#include <stdint.h>

MPI_Comm elip_mpi_comm_world(void);
MPI_Comm elip_mpi_comm_null(void);
MPI_Datatype elip_mpi_float(void);
MPI_Datatype elip_mpi_double(void);
MPI_Datatype elip_mpi_int32(void);
MPI_Datatype elip_mpi_int64(void);
MPI_Datatype elip_mpi_uint8(void);
MPI_Op elip_mpi_sum(void);
MPI_Op elip_mpi_max(void);
MPI_Op elip_mpi_min(void);
MPI_Request elip_mpi_request_null(void);
MPI_Errhandler elip_mpi_errors_return(void);
void *elip_mpi_in_place(void);
int elip_mpi_success(void);
int elip_mpi_thread_multiple(void);
int elip_mpi_thread_serialized(void);
int elip_mpi_thread_funneled(void);
int elip_mpi_max_error_string(void);
int elip_mpi_thread_single(void);

// Not a handle: x[i] *= a, in C so the debug build's scaling of gradient buckets stays fast.
void elip_scale_float(float *x, int64_t n, float a);

// Collective watchdog (Watchdog.c): the training thread brackets blocking collectives with
// enter/leave; a helper thread aborts the job when a wait outlasts the timeout and another rank
// does not answer a liveness check (or every rank is waiting). Needs MPI_THREAD_MULTIPLE.
int elip_watchdog_start(MPI_Comm comm, double timeout_seconds, double grace_seconds, int exit_code);
void elip_watchdog_stop(void);
void elip_watchdog_enter(const char *operation);
void elip_watchdog_leave(void);
void elip_watchdog_set_context(const char *context);
#endif
