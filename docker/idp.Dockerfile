# The demo's OpenID Provider: oidc-provider (testbed/idp), as docker-compose.yaml
# at the repository root runs it. Build context: the repository root.
#   docker build -f docker/idp.Dockerfile -t portcullis-idp .
FROM node:22-bookworm-slim
WORKDIR /idp
COPY testbed/idp/package.json testbed/idp/package-lock.json ./
RUN npm ci --omit=dev
COPY testbed/idp/idp.mjs ./
CMD ["node", "idp.mjs", "8083"]
