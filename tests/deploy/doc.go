// Package deploy validates the deployment files offline: nothing here can
// run a container engine or reach a cluster, so the tests load
// docker-compose.yml with the Compose specification's own loader, build every
// kustomize overlay with kustomize's library, decode each object strictly
// against the Kubernetes API types, and check the policies the project holds
// its deployments to.
package deploy
