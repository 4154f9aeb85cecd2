#include "claim/transport.hpp"

#include <mpi.h>

#include <cstring>
#include <vector>

namespace mpmux::claim {

std::string mca_selection(const char* framework) {
  int provided = 0;
  if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return "";
  std::string value;
  int count = 0;
  if (MPI_T_cvar_get_num(&count) == MPI_SUCCESS) {
    for (int i = 0; i < count && value.empty(); ++i) {
      char name[256] = {};
      int name_length = sizeof name;
      int verbosity = 0, bind = 0, scope = 0, description_length = 0;
      MPI_Datatype type = MPI_DATATYPE_NULL;
      MPI_T_enum enumtype = MPI_T_ENUM_NULL;
      if (MPI_T_cvar_get_info(i, name, &name_length, &verbosity, &type, &enumtype, nullptr,
                              &description_length, &bind, &scope) != MPI_SUCCESS ||
          std::strcmp(name, framework) != 0 || type != MPI_CHAR) {
        continue;
      }
      MPI_T_cvar_handle handle = MPI_T_CVAR_HANDLE_NULL;
      int length = 0;
      if (MPI_T_cvar_handle_alloc(i, nullptr, &handle, &length) != MPI_SUCCESS) break;
      std::vector<char> text(static_cast<std::size_t>(length) + 1, '\0');
      if (MPI_T_cvar_read(handle, text.data()) == MPI_SUCCESS) value = text.data();
      MPI_T_cvar_handle_free(&handle);
      break;
    }
  }
  MPI_T_finalize();
  return value;
}

std::string transport_description() {
  std::string text;
  for (const char* framework : {"btl", "osc", "pml"}) {
    const std::string selection = mca_selection(framework);
    if (selection.empty()) continue;
    if (!text.empty()) text += ", ";
    text += std::string(framework) + " " + selection;
  }
  if (!text.empty()) return text;
  char library[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(library, &length);
  std::string name(library, static_cast<std::size_t>(length));
  return name.substr(0, name.find_first_of(",\n"));
}

std::string one_sided_remedy() {
#ifdef OPEN_MPI
  return "Open MPI's osc/rdma needs a btl with RDMA (not tcp); --mca osc sm,pt2pt,rdma (or "
         "OMPI_MCA_osc=sm,pt2pt,rdma) adds osc/pt2pt, which works over any transport, and a UCX build takes "
         "--mca pml ucx --mca osc ucx";
#else
  return "the MPI's one-sided support over this network must be enabled (see its documentation)";
#endif
}

}  // namespace mpmux::claim
