// What carries MPI traffic in this job, as far as the MPI says: for messages that tell a user why
// a window could not be made and which settings would help.
#pragma once
#include <string>

namespace mpmux::claim {

/// Open MPI's selection of one framework ("btl", "osc", "pml"), read through MPI_T: "self,tcp",
/// "^ucx,pt2pt". Empty when the MPI has no such control variable or it is unset.
std::string mca_selection(const char* framework);

/// "btl self,tcp, osc ^ucx,pt2pt, pml ^ucx" on Open MPI; the library's name otherwise.
std::string transport_description();

/// The settings that give a window a one-sided path when the loaded components cannot serve it.
std::string one_sided_remedy();

}  // namespace mpmux::claim
