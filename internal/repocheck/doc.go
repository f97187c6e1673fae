// Package repocheck keeps build outputs out of git: Check lists the
// tracked files that are compiled executables (ELF, Mach-O, PE, or an
// executable file that is not a script) or larger than MaxSize, except
// those allowed by name. Its test runs it on this repository, so `make
// test` (and CI) fails when such a file is committed.
package repocheck
