include(CMakePackageConfigHelpers)
set(MPMUX_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mpmux)

install(TARGETS mpmux EXPORT mpmuxTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS mpmux_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/mpmux DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/include/mpmux/export.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mpmux)

install(EXPORT mpmuxTargets NAMESPACE mpmux:: DESTINATION ${MPMUX_CMAKE_DIR})
# find_package(mpmux) from the build tree, too.
export(EXPORT mpmuxTargets NAMESPACE mpmux:: FILE ${PROJECT_BINARY_DIR}/mpmuxTargets.cmake)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mpmuxConfig.cmake.in
  ${PROJECT_BINARY_DIR}/mpmuxConfig.cmake INSTALL_DESTINATION ${MPMUX_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mpmuxConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mpmuxConfig.cmake ${PROJECT_BINARY_DIR}/mpmuxConfigVersion.cmake
        DESTINATION ${MPMUX_CMAKE_DIR})

# Relocatable: the prefix is found from where the .pc file lies.
file(RELATIVE_PATH MPMUX_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
configure_file(${PROJECT_SOURCE_DIR}/cmake/mpmux.pc.in ${PROJECT_BINARY_DIR}/mpmux.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/mpmux.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The example task plugin, built and as source (its header, mpmux/plugin.h, is installed above).
install(TARGETS rosenbrock LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/mpmux/tasks)
install(FILES ${PROJECT_SOURCE_DIR}/plugins/tasks/rosenbrock.c ${PROJECT_SOURCE_DIR}/plugins/tasks/README.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/tasks)

# The example workflows (docs/workflows.md) with their task, loss.sh, which keeps its execute bit.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/plugins/workflows/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/workflows
        USE_SOURCE_PERMISSIONS)

# The Slurm SPANK plugin, where it was built; plugstack.conf names it (docs/guide.md).
if(TARGET mpmux_spank)
  install(TARGETS mpmux_spank LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/slurm)
endif()
