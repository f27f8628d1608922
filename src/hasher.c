/* placeholder: hasher */
