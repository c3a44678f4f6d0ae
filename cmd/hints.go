package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/gracectl/gracectl/probe"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// permissionHint explains a permission error on the registry: whose the
// folder is, and the two ways out. "" for other errors.
func permissionHint(err error) string {
	if !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	var pe *fs.PathError
	dir := ""
	if errors.As(err, &pe) {
		dir = filepath.Dir(pe.Path)
	}
	owner := ""
	if info, serr := os.Stat(dir); dir != "" && serr == nil {
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			owner = fmt.Sprintf("%s belongs to %s:%s (mode %04o) and you are %s; ", dir,
				userName(int(st.Uid)), groupName(int(st.Gid)), info.Mode().Perm(), userName(os.Geteuid()))
		}
	}
	return owner + "to share it, root runs 'gracectl init --group NAME' and adds you to NAME; or use a registry of your own with --root DIR"
}

func userName(uid int) string { return probe.UserName(uid) }

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// guessedFlagHint answers a flag people guess that gracectl spells
// otherwise: `allocate --port 8050` asks for a port, which --preferred
// does; `release --port 8000` names a port, which is an argument there.
// "" for any other mistake (the hint is then to see the help).
func guessedFlagHint(c *cobra.Command, err error, args []string) string {
	var ne *pflag.NotExistError
	if !errors.As(err, &ne) || ne.GetSpecifiedName() != "port" {
		return ""
	}
	v := flagValue(args, "port")
	if v == "" {
		v = "PORT"
	}
	switch {
	case c.Flags().Lookup("preferred") != nil:
		return fmt.Sprintf("to ask for port %s, use --preferred %s", v, v)
	case strings.Contains(c.Use, " PORT"):
		return fmt.Sprintf("give the port as an argument: %s %s", c.CommandPath(), v)
	}
	return ""
}

// flagValue is the value given to --name in args (--name V or --name=V),
// or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
