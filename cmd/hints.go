package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
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

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}
