"""The condition language's core: the tree of tests on named facts (tree), the facts a rule may
read (facts) and the derived usage features they compute from (features). Pure."""
