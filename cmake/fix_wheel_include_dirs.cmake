# Injected with -DCMAKE_PROJECT_INCLUDE=<this file> by scripts/setup.sh, with the PyPI wheels and
# with a real ROS 2 alike; CMakeLists.txt never include()s it, so an ordinary workspace build of
# the package does not depend on it. Both fixes below only touch entries that would fail.
#
# Why: the ROS 2 Jazzy wheels from PyPI were built under /opt/python/cp311-cp311, and their
# share/*/cmake/export_*__rosidl_generator_pyExport.cmake files hard-code that prefix for the
# Python and NumPy include directories. Those paths do not exist here, and CMake refuses to
# generate a build that links an imported target with a missing include directory.
#
# What: at the end of configuring the top-level directory (after every find_package), walk the
# imported targets; in INTERFACE_INCLUDE_DIRECTORIES replace each missing ".../include/pythonX.Y"
# by this interpreter's include directory and each missing ".../numpy/{_core,core}/include" by
# this NumPy's. Existing directories are left alone, so the fix is a no-op where nothing is
# broken, and it survives later wheel installs (nothing in the venv is edited).
#
# Second fix, for the venv living inside the package's source tree (.venv/ at the repo root):
# rosidl_generator_py gives this project's <pkg>__rosidl_generator_py library PUBLIC include
# directories for Python and NumPy; NumPy's is then .venv/..., i.e. inside the source directory,
# and CMake refuses to export (install(EXPORT)) a target whose interface points into the source
# tree. Such entries of this project's own targets are wrapped in $<BUILD_INTERFACE:...>: they
# still apply while building here, and are left out of the installed export, where no consumer
# needs them (nobody compiles against this package's Python typesupport library).
include_guard(GLOBAL)
if(CMAKE_VERSION VERSION_LESS 3.19)
  message(FATAL_ERROR "fix_wheel_include_dirs.cmake needs CMake >= 3.19 (cmake_language(DEFER)); "
    "this is ${CMAKE_VERSION}")
endif()

function(_intradp_fix_wheel_include_dirs)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_python "${Python3_EXECUTABLE}")
  if(NOT _python)
    find_program(_python NAMES python3 python)
  endif()
  set(_py_include "")
  set(_np_include "")
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs "${_target}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_fixed "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
        list(APPEND _fixed "${_dir}")
        continue()
      endif()
      if(_dir MATCHES "/numpy/(_core|core)/include$")
        if(NOT _np_include)
          execute_process(
            COMMAND "${_python}" -c "import numpy; print(numpy.get_include(), end='')"
            OUTPUT_VARIABLE _np_include RESULT_VARIABLE _rc)
          if(NOT _rc EQUAL 0)
            message(FATAL_ERROR "fix_wheel_include_dirs: '${_python}' cannot import numpy; "
              "install numpy in the environment that builds this package")
          endif()
        endif()
        list(APPEND _fixed "${_np_include}")
        set(_changed TRUE)
      elseif(_dir MATCHES "/include/python3\\.[0-9]+$")
        if(NOT _py_include)
          execute_process(
            COMMAND "${_python}" -c "import sysconfig; print(sysconfig.get_paths()['include'], end='')"
            OUTPUT_VARIABLE _py_include RESULT_VARIABLE _rc)
          if(NOT _rc EQUAL 0)
            message(FATAL_ERROR "fix_wheel_include_dirs: cannot query '${_python}' for its include dir")
          endif()
        endif()
        list(APPEND _fixed "${_py_include}")
        set(_changed TRUE)
      else()
        list(APPEND _fixed "${_dir}")
      endif()
    endforeach()
    if(_changed)
      list(REMOVE_DUPLICATES _fixed)
      set_target_properties("${_target}" PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
      message(STATUS "fix_wheel_include_dirs: repaired include dirs of ${_target}")
    endif()
  endforeach()

  get_property(_own_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(_target IN LISTS _own_targets)
    get_target_property(_type "${_target}" TYPE)
    if(_type STREQUAL "UTILITY")
      continue()
    endif()
    get_target_property(_dirs "${_target}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_fixed "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      string(FIND "${_dir}/" "${CMAKE_SOURCE_DIR}/" _in_source)
      string(FIND "${_dir}/" "${CMAKE_BINARY_DIR}/" _in_binary)
      if(_in_source EQUAL 0 AND NOT _in_binary EQUAL 0 AND NOT _dir MATCHES "^\\$<")
        list(APPEND _fixed "$<BUILD_INTERFACE:${_dir}>")
        set(_changed TRUE)
      else()
        list(APPEND _fixed "${_dir}")
      endif()
    endforeach()
    if(_changed)
      set_target_properties("${_target}" PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
      message(STATUS "fix_wheel_include_dirs: kept source-tree include dirs of ${_target} out of its export")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _intradp_fix_wheel_include_dirs)
