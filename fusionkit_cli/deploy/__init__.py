"""`fusionkit deploy compose|k8s CONFIG`: deployment files for router replicas on a shared PostgreSQL store.

`plan` says what a deployment of a panel config is made of; `compose` and `k8s` write it for Docker
Compose and for Kubernetes. docs/operations.md says when to move from `fusionkit up` to these.
"""
