package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// versionText is what `herald version` and `herald --version` print: the
// version (-ldflags "-X main.Version=…", else the module version of a
// `go install`), the VCS commit the binary was built from (the toolchain's
// vcs.revision, else main.Commit), and the Go version.
func versionText() string {
	version, commit, goVersion := Version, Commit, runtime.Version()
	if commit == "" {
		commit = "unknown"
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && commit != "unknown" {
			commit += " (modified)"
		}
		goVersion = bi.GoVersion
	}
	return fmt.Sprintf("herald %s\ncommit: %s\ngo: %s\n", version, commit, goVersion)
}
