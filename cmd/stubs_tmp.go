package cmd

import "github.com/spf13/cobra"

func newRunCmd(g *globals) *cobra.Command   { return &cobra.Command{Use: "run", Hidden: true} }
func newCheckCmd(g *globals) *cobra.Command { return &cobra.Command{Use: "check", Hidden: true} }
func newWatchCmd(g *globals) *cobra.Command { return &cobra.Command{Use: "watch", Hidden: true} }
func newExecTrampolineCmd() *cobra.Command  { return &cobra.Command{Use: "__exec", Hidden: true} }
