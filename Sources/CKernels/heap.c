#include "CKernels.h"
#include <malloc.h>

// glibc keeps freed chunks below the mmap threshold (which grows up to 32 MiB as large blocks
// are freed) in its arenas; malloc_trim hands their pages back. Swift's Glibc module does not
// export it.
int elip_release_free_heap(void) { return malloc_trim(0); }
