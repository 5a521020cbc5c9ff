package cli

import "fmt"

func dbCmd(e env, args []string) (int, error) {
	return sub(e, "db", args, map[string]func(env, []string) (int, error){
		"backup":  notYet("db backup"),
		"restore": notYet("db restore"),
		"repair":  notYet("db repair"),
	})
}

func keygenCmd(e env, args []string) (int, error) { return notYet("keygen")(e, args) }

func updatesCmd(e env, args []string) (int, error) {
	return sub(e, "updates", args, map[string]func(env, []string) (int, error){
		"fetch": notYet("updates fetch"),
	})
}

func notYet(name string) func(env, []string) (int, error) {
	return func(e env, args []string) (int, error) {
		return 1, fmt.Errorf("host %s: %w", name, errNotImplemented)
	}
}
